//! Safetensors files read into memory (memory-mapping is unsafe in candle).

use crate::error::EvalError;
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

pub(crate) fn load(path: &Path) -> Result<HashMap<String, Tensor>, EvalError> {
    let bytes = std::fs::read(path).map_err(|e| EvalError::io(path, e))?;
    candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| EvalError::parse(path, e))
}
