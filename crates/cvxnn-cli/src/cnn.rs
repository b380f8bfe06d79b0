//! The CNN options of `cvxnn train` (`--model cnn-relu|cnn-gated-relu --input-shape --kernel
//! --stride --padding`): parsed into the library's [`ConvConfig`]; training, predicting and
//! saving then go through the same commands as the dense models.

use anyhow::{bail, Context, Result};
use cvxnn::data::{ConvShape, PoolKind};
use cvxnn::estimator::{Architecture, ConvConfig};

use crate::args::{ModelArg, PoolArg, TrainArgs};

/// Parses `1,8,8` (or `1,6`) into (channels, spatial sizes).
pub(crate) fn parse_input_shape(s: &str) -> Result<(usize, Vec<usize>)> {
    let dims: Vec<usize> = s
        .split(',')
        .map(|v| v.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("invalid argument `input-shape`: `{s}` is not C,H,W or C,L"))?;
    match dims.split_first() {
        Some((&c, rest)) if !rest.is_empty() && rest.len() <= 2 => Ok((c, rest.to_vec())),
        _ => bail!("invalid argument `input-shape`: `{s}` is not C,H,W or C,L"),
    }
}

/// Parses `3x3` or `3` (square kernel, or a 1-D one) for `rank` spatial dimensions.
pub(crate) fn parse_kernel(s: &str, rank: usize) -> Result<Vec<usize>> {
    let dims: Vec<usize> = s
        .split('x')
        .map(|v| v.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("invalid argument `kernel`: `{s}` is not like 3x3 or 3"))?;
    Ok(if dims.len() == 1 {
        vec![dims[0]; rank]
    } else {
        dims
    })
}

/// Whether `model` is a CNN.
pub(crate) fn is_cnn(model: ModelArg) -> bool {
    matches!(model, ModelArg::CnnRelu | ModelArg::CnnGatedRelu)
}

/// The convolution of a CNN model from `--input-shape`, `--kernel`, `--stride`, `--padding`
/// (`None` for a dense model, which must not get them). `inferred`: the input shape read from
/// the data (a `.npy` array of shape (n, C, H, W) or (n, C, L)), used when `--input-shape` is
/// absent and checked against it when present.
pub(crate) fn conv_config(
    a: &TrainArgs,
    inferred: Option<(usize, Vec<usize>)>,
) -> Result<Option<ConvConfig>> {
    let Some(mut conv) = conv_options(
        a.program.model,
        (a.input_shape.as_deref(), a.kernel.as_deref()),
        (a.stride, a.padding),
        inferred,
    )?
    else {
        if a.pool != PoolArg::None {
            bail!("invalid argument `pool`: --pool needs --model cnn-relu, cnn-gated-relu or linear-cnn");
        }
        return Ok(None);
    };
    match a.pool {
        PoolArg::None => {}
        PoolArg::Avg => bail!(
            "invalid argument `pool`: the CNN models take --pool none (global sum pooling), avg:S or max:S; `avg` (global average) is for --model linear-cnn"
        ),
        PoolArg::Local(p) => {
            if p.kind == PoolKind::Max && a.program.model == ModelArg::CnnGatedRelu {
                bail!("invalid argument `pool`: max:S takes --model cnn-relu (a gated unit's maximum is not linear in its filter)");
            }
            // The windows must fit the convolution's output map.
            p.windows(&conv.shape)
                .with_context(|| format!("invalid argument `pool`: {}", p.describe()))?;
            conv.architecture = Architecture::pooled(p.kind);
            conv.pool = Some(p);
        }
    }
    Ok(Some(conv))
}

/// [`conv_config`] from the options themselves (`train` and `path` both have them).
pub(crate) fn conv_options(
    model: ModelArg,
    (input_shape, kernel): (Option<&str>, Option<&str>),
    (stride, padding): (usize, usize),
    inferred: Option<(usize, Vec<usize>)>,
) -> Result<Option<ConvConfig>> {
    if !is_cnn(model) {
        if input_shape.is_some() || kernel.is_some() {
            bail!("invalid argument `input-shape`: --input-shape and --kernel need --model cnn-relu or cnn-gated-relu");
        }
        return Ok(None);
    }
    let (channels, spatial) = match (input_shape, inferred) {
        (Some(text), inferred) => {
            let given = parse_input_shape(text)?;
            if let Some(shape) = inferred {
                if shape != given {
                    bail!(
                        "invalid argument `input-shape`: {text} differs from the data's sample shape {}",
                        shape_text(&shape)
                    );
                }
            }
            given
        }
        (None, Some(shape)) => shape,
        (None, None) => bail!(
            "invalid argument `input-shape`: the CNN models need --input-shape C,H,W (or C,L), or a .npy array of shape (n, C, H, W)"
        ),
    };
    let Some(kernel_text) = kernel else {
        bail!("invalid argument `kernel`: the CNN models need --kernel (e.g. 3x3)");
    };
    let kernel = parse_kernel(kernel_text, spatial.len())?;
    let shape = ConvShape::new(channels, spatial, kernel, stride, padding)?;
    Ok(Some(ConvConfig {
        architecture: Architecture::CnnSumPool,
        shape,
        pool: None,
    }))
}

/// `C,H,W` as text.
fn shape_text((c, spatial): &(usize, Vec<usize>)) -> String {
    std::iter::once(c)
        .chain(spatial)
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(",")
}
