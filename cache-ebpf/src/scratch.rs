//! Per-CPU working memory (the BPF stack is 512 bytes).
pub struct Scratch {
    pub buf: [u8; 2048],
}
