//! Hostile and broken files: each gets its own clear error, never a panic or a huge allocation.

use std::path::{Path, PathBuf};

use eas_auxdata::{Error, Format, ReadOptions, read_bytes, read_path};

fn bad(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/auxdata/bad")
        .join(name)
}

fn good(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/auxdata")
            .join(name),
    )
    .unwrap()
}

#[test]
fn forbidden_globals_are_named() {
    for (file, module, name) in [
        ("forbidden_os_system.npy", "posix", "system"),
        ("forbidden_builtins_eval.npy", "builtins", "eval"),
        ("forbidden_subprocess_popen.npy", "subprocess", "Popen"),
        ("forbidden_os_system.pth", "posix", "system"),
    ] {
        let e = read_path(bad(file)).unwrap_err();
        match &e {
            Error::ForbiddenGlobal {
                module: m, name: n, ..
            } => {
                assert_eq!((m.as_str(), n.as_str()), (module, name), "{file}");
            }
            other => panic!("{file}: expected ForbiddenGlobal, got {other:?}"),
        }
        let msg = e.to_string();
        assert!(msg.contains(&format!("{module}.{name}")), "{msg}");
        assert!(msg.contains(file), "the message names the file: {msg}");
    }
}

#[test]
fn absurd_shapes_fail_before_allocating() {
    for file in [
        "absurd_shape.npy",
        "absurd_pickled_shape.npy",
        "view_out_of_range.pth",
    ] {
        match read_path(bad(file)) {
            Err(Error::ShapeTooLarge { .. }) => {}
            other => panic!("{file}: expected ShapeTooLarge, got {other:?}"),
        }
    }
}

#[test]
fn zip_entries_with_dotdot_are_refused() {
    match read_path(bad("dotdot.npz")) {
        Err(Error::UnsafeZipPath { entry, .. }) => assert_eq!(entry, "../evil.npy"),
        other => panic!("expected UnsafeZipPath, got {other:?}"),
    }
}

#[test]
fn corrupt_zip_is_a_zip_error() {
    match read_path(bad("corrupt.npz")) {
        Err(Error::Zip { .. }) => {}
        other => panic!("expected Zip, got {other:?}"),
    }
}

#[test]
fn random_bytes_are_an_unknown_format() {
    match read_path(bad("random.bin")) {
        Err(Error::UnknownFormat { .. }) => {}
        other => panic!("expected UnknownFormat, got {other:?}"),
    }
    // ... and, forced through each reader, a bad-magic error
    let b = std::fs::read(bad("random.bin")).unwrap();
    for f in [Format::Npy, Format::Pth] {
        match read_bytes(&b, f, &ReadOptions::default()) {
            Err(Error::BadMagic { .. }) => {}
            other => panic!("{f:?}: expected BadMagic, got {other:?}"),
        }
    }
    assert!(matches!(
        read_bytes(&b, Format::Npz, &ReadOptions::default()),
        Err(Error::Zip { .. })
    ));
}

#[test]
fn wrong_magic_by_extension() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.npy");
    std::fs::write(&p, b"\x93NUMPX\x01\x00garbage").unwrap();
    match read_path(&p) {
        Err(Error::BadMagic { expected, .. }) => assert_eq!(expected, ".npy"),
        other => panic!("expected BadMagic, got {other:?}"),
    }
    let p = dir.path().join("x.pth");
    std::fs::write(&p, b"not a zip at all").unwrap();
    assert!(matches!(read_path(&p), Err(Error::BadMagic { .. })));
}

#[test]
fn every_truncation_of_real_files_is_an_error() {
    for name in [
        "numpy2/feed_dicts.npy",
        "numpy1/feed_dicts.npy",
        "numpy2/fortran_f4.npy",
        "numpy2/version3.npy",
        "torch/views_shared.pth",
        "torch/legacy.pth",
        "numpy2/deflated.npz",
    ] {
        let b = good(name);
        let format = Format::detect(&b, Some(Path::new(name))).unwrap();
        for cut in 0..b.len() {
            let r = read_bytes(&b[..cut], format, &ReadOptions::default());
            assert!(r.is_err(), "{name} cut at {cut} of {} read fine", b.len());
        }
    }
}

#[test]
fn truncated_npy_data_says_so() {
    let b = good("numpy2/plain_float64.npy");
    let e = read_bytes(&b[..b.len() - 3], Format::Npy, &ReadOptions::default()).unwrap_err();
    assert!(matches!(e, Error::ShapeTooLarge { .. }), "{e:?}");
    assert!(e.to_string().contains("needs 48 bytes"), "{e}");
    let b = good("numpy2/feed_dicts.npy");
    let e = read_bytes(&b[..b.len() - 1], Format::Npy, &ReadOptions::default()).unwrap_err();
    assert!(matches!(e, Error::Truncated { .. }), "{e:?}");
}

#[test]
fn legacy_torch_without_storages_is_a_clear_error() {
    let b = good("torch/legacy.pth");
    let e = read_bytes(&b[..b.len() - 4], Format::Pth, &ReadOptions::default()).unwrap_err();
    assert!(matches!(e, Error::Truncated { .. }), "{e:?}");
}
