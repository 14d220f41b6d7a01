//! The demo: two processes talking through an ipc `Queue` and `Pipe`.
fn main() {}
