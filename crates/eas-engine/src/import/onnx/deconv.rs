//! ConvTranspose builder.

use super::OnnxRegistry;
use crate::Error;
use crate::ops::deconv::{ConvTranspose, DeconvPadding};

pub(super) fn register(r: &mut OnnxRegistry) {
    r.insert("ConvTranspose", |c| {
        let x = c.input(0)?;
        let w = c.input(1)?;
        let n = c.fact(x).rank().saturating_sub(2);
        let ones = vec![1usize; n];
        let padding = match c.attr_or("auto_pad", "NOTSET".to_string())?.as_str() {
            "SAME_UPPER" => DeconvPadding::SameUpper,
            "SAME_LOWER" => DeconvPadding::SameLower,
            "NOTSET" | "VALID" => DeconvPadding::Explicit(c.attr_or("pads", vec![0usize; 2 * n])?),
            p => return Err(c.err(format!("unknown auto_pad {p:?}"))),
        };
        if let Some(k) = c.attr_opt::<Vec<usize>>("kernel_shape")? {
            let wd = c.fact(w).shape.as_known();
            if wd.is_some_and(|d| d.len() == k.len() + 2 && d[2..] != k[..]) {
                return Err(Error::unsupported(
                    "ConvTranspose kernel_shape different from the weights' shape",
                ));
            }
        }
        let op = ConvTranspose {
            strides: c.attr_or("strides", ones.clone())?,
            dilations: c.attr_or("dilations", ones)?,
            output_padding: c.attr_or("output_padding", vec![0; n])?,
            padding,
            output_shape: c.attr_opt("output_shape")?,
            group: c.attr_or("group", 1)?,
        };
        let mut ins = vec![x, w];
        ins.extend(c.opt_input(2));
        Ok(vec![c.add(op, &ins)?])
    });
}
