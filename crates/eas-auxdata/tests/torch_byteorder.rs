//! A .pth saved on a big-endian machine (byteorder "big") reads the same as the original.

use std::io::{Read, Write};
use std::path::Path;

use eas_auxdata::{Format, ReadOptions, read_bytes};

#[test]
fn big_endian_storages_are_swapped() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/auxdata/torch/all_dtypes.pth");
    let orig = std::fs::read(&path).unwrap();
    // storage k of all_dtypes.pth holds these element sizes (see gen_fixtures.py)
    let sizes = [4usize, 8, 2, 2, 8, 4, 2, 1, 1, 1, 2, 4, 8];
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(&orig)).unwrap();
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut swapped = 0;
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let name = f.name().unwrap().to_string();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        if name.ends_with("/byteorder") {
            data = b"big".to_vec();
        } else if let Some(k) = name
            .rsplit_once("/data/")
            .map(|(_, k)| k.parse::<usize>().unwrap())
        {
            for c in data.chunks_mut(sizes[k]) {
                c.reverse();
            }
            swapped += 1;
        }
        out.start_file(name, opts).unwrap();
        out.write_all(&data).unwrap();
    }
    assert_eq!(swapped, sizes.len());
    let big = out.finish().unwrap().into_inner();
    let a = read_bytes(&orig, Format::Pth, &ReadOptions::default()).unwrap();
    let b = read_bytes(&big, Format::Pth, &ReadOptions::default()).unwrap();
    assert_eq!(a, b);
    assert_ne!(orig, big);
}
