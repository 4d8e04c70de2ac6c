//! Datasets (lists of samples), samples (named or positional tensors) and their summary.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::tensor::Tensor;

/// Blade asks for more than 100 calibration samples; fewer gets a warning.
pub const MIN_CALIBRATION_SAMPLES: usize = 100;

/// A list of samples, in file order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dataset {
    pub samples: Vec<Sample>,
}

/// One sample: named feeds (a TensorFlow feed dict, keys in file order) or positional tensors
/// (a PyTorch tuple).
#[derive(Debug, Clone, PartialEq)]
pub enum Sample {
    Named(Vec<(String, Tensor)>),
    Positional(Vec<Tensor>),
}

impl Sample {
    /// The tensors with their names (`None` when positional), in order.
    pub fn tensors(&self) -> Vec<(Option<&str>, &Tensor)> {
        match self {
            Sample::Named(v) => v.iter().map(|(k, t)| (Some(k.as_str()), t)).collect(),
            Sample::Positional(v) => v.iter().map(|t| (None, t)).collect(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Sample::Named(v) => v.len(),
            Sample::Positional(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tensor fed as `name` (named samples only).
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        match self {
            Sample::Named(v) => v.iter().find(|(k, _)| k == name).map(|(_, t)| t),
            Sample::Positional(_) => None,
        }
    }
}

/// What a dataset holds, for reports: per feed, the dtypes and shapes seen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub samples: usize,
    pub feeds: Vec<FeedSummary>,
}

/// One feed (a name, or a position for positional samples) across all samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedSummary {
    /// Feed key; `None` for positional samples.
    pub name: Option<String>,
    /// Position in the first sample that has this feed.
    pub index: usize,
    /// How many samples hold this feed.
    pub present_in: usize,
    /// Distinct dtypes (numpy names), in order of first appearance.
    pub dtypes: Vec<String>,
    /// Distinct shapes, in order of first appearance.
    pub shapes: Vec<Vec<usize>>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn summary(&self) -> Summary {
        // hash indexes: a hostile file with a million feed names or shapes stays linear
        let mut feeds: Vec<FeedSummary> = Vec::new();
        let mut index: HashMap<(Option<&str>, usize), usize> = HashMap::new();
        let mut shapes_seen: Vec<HashSet<&[usize]>> = Vec::new();
        for s in &self.samples {
            for (i, (name, t)) in s.tensors().into_iter().enumerate() {
                // named feeds are keyed by name alone, positional ones by position
                let key = (name, if name.is_some() { 0 } else { i });
                let p = *index.entry(key).or_insert_with(|| {
                    feeds.push(FeedSummary {
                        name: name.map(str::to_string),
                        index: i,
                        present_in: 0,
                        dtypes: Vec::new(),
                        shapes: Vec::new(),
                    });
                    shapes_seen.push(HashSet::new());
                    feeds.len() - 1
                });
                let f = &mut feeds[p];
                f.present_in += 1;
                let d = t.dtype().name();
                if !f.dtypes.iter().any(|x| x == d) {
                    f.dtypes.push(d.to_string());
                }
                if shapes_seen[p].insert(t.shape()) {
                    f.shapes.push(t.shape().to_vec());
                }
            }
        }
        Summary {
            samples: self.samples.len(),
            feeds,
        }
    }

    /// A warning when this dataset, used for INT8 calibration, has too few samples.
    pub fn calibration_warning(&self) -> Option<String> {
        let n = self.samples.len();
        (n < MIN_CALIBRATION_SAMPLES).then(|| {
            format!(
                "the calibration dataset has {n} sample{}; Blade asks for more than \
                 {MIN_CALIBRATION_SAMPLES} for offline INT8 calibration, so the ranges may not \
                 represent real inputs",
                if n == 1 { "" } else { "s" }
            )
        })
    }
}
