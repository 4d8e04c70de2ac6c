//! Memory planning: place every intermediate buffer at an arena offset such that two
//! buffers alive at the same step never overlap. Greedy by size (largest first, lowest
//! fitting offset), as in TFLite's arena planner.

/// A buffer request: `size` bytes, alive from step `start` to step `end` inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferReq {
    pub size: usize,
    pub start: usize,
    pub end: usize,
}

/// Offsets are multiples of this, so every buffer is cache-line (and SIMD) aligned.
pub const ALIGN: usize = 64;

/// Returns each buffer's offset and the arena size.
pub fn plan(reqs: &[BufferReq]) -> (Vec<usize>, usize) {
    let mut order: Vec<usize> = (0..reqs.len()).collect();
    order.sort_by(|&a, &b| {
        reqs[b]
            .size
            .cmp(&reqs[a].size)
            .then(reqs[a].start.cmp(&reqs[b].start))
    });
    let mut offsets = vec![0usize; reqs.len()];
    let mut placed: Vec<usize> = Vec::with_capacity(reqs.len());
    let mut total = 0usize;
    for &i in &order {
        let r = reqs[i];
        let size = r.size.div_ceil(ALIGN) * ALIGN;
        // Intervals of already placed buffers that are alive at the same time, by offset.
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&j| reqs[j].start <= r.end && r.start <= reqs[j].end)
            .map(|&j| {
                (
                    offsets[j],
                    offsets[j] + reqs[j].size.div_ceil(ALIGN) * ALIGN,
                )
            })
            .collect();
        busy.sort_unstable();
        let mut off = 0usize;
        for (s, e) in busy {
            if size == 0 || off + size <= s {
                break;
            }
            off = off.max(e);
        }
        offsets[i] = off;
        total = total.max(off + size);
        placed.push(i);
    }
    (offsets, total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reuses_dead_buffers() {
        let reqs = [
            BufferReq {
                size: 100,
                start: 0,
                end: 1,
            },
            BufferReq {
                size: 100,
                start: 1,
                end: 2,
            },
            BufferReq {
                size: 100,
                start: 2,
                end: 3,
            },
        ];
        let (off, total) = plan(&reqs);
        assert_eq!(off[0], off[2]);
        assert_ne!(off[0], off[1]);
        assert_eq!(total, 256);
    }

    proptest! {
        #[test]
        fn never_aliases_two_live_buffers(
            raw in proptest::collection::vec((0usize..5000, 0usize..40, 0usize..10), 0..60)
        ) {
            let reqs: Vec<BufferReq> = raw.iter().map(|&(size, start, len)| BufferReq { size, start, end: start + len }).collect();
            let (off, total) = plan(&reqs);
            for (i, a) in reqs.iter().enumerate() {
                prop_assert_eq!(off[i] % ALIGN, 0);
                prop_assert!(off[i] + a.size <= total);
                for (j, b) in reqs.iter().enumerate().skip(i + 1) {
                    let live_together = a.start <= b.end && b.start <= a.end;
                    let overlap = off[i] < off[j] + b.size && off[j] < off[i] + a.size;
                    prop_assert!(!(live_together && overlap && a.size > 0 && b.size > 0),
                        "buffers {} and {} alias: {:?}@{} {:?}@{}", i, j, a, off[i], b, off[j]);
                }
            }
        }
    }
}
