//! The demo runs end to end and prints what the README promises.

#[test]
fn demo_prints_the_conversation_and_the_comparison() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ipc-examples"))
        .output()
        .expect("run the demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for job in ["RESIZE PHOTO", "SEND MAIL", "COMPRESS LOGS"] {
        assert!(
            text.contains(&format!("parent replied \"done: {job}\"")),
            "{text}"
        );
    }
    assert!(
        text.contains("ipc Pipe :") && text.contains("OS pipe  :"),
        "{text}"
    );
    assert!(text.contains("x faster"), "{text}");
}

#[test]
fn quickstart_example_runs() {
    // The README's quick start, built as an example of this package.
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_ipc-examples"))
        .parent()
        .unwrap()
        .join("examples/quickstart");
    if !exe.exists() {
        // Examples are built by `cargo test` but not necessarily by nextest
        // in every mode; build it explicitly.
        let st = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", "ipc-examples", "--example", "quickstart"])
            .status()
            .expect("cargo build");
        assert!(st.success());
    }
    let out = std::process::Command::new(&exe)
        .output()
        .expect("run quickstart");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("parent got job #1 \"hello\""), "{text}");
    assert!(text.contains("child got done #1"), "{text}");
}
