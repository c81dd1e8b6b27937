//! Model weights and forward passes.

pub(crate) mod gguf_llama;
pub(crate) mod hf_llama;
pub(crate) mod llama;
pub(crate) mod phi3;
