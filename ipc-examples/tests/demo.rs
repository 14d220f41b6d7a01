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
    assert!(text.contains("exited with code Some(0)"), "{text}");
    assert!(
        text.contains("squares of 0..10 = [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]"),
        "{text}"
    );
    assert!(
        text.contains(
            r#"another process reads the dict: [(0, "apple"), (1, "banana"), (2, "cherry")]"#
        ),
        "{text}"
    );
    assert!(text.contains("flagged OwnerDied"), "{text}");
    // The spawned child, a fresh program, met the parent's region by name.
    let pid = out_pid(&text);
    assert!(
        text.contains(&format!(
            "0 mapping(s) of /dev/shm/ipc.tour-{pid} before opening it by name, 1 after; it reads \"hello from the parent, pid {pid}\""
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "parent: the child read \"hello from the parent, pid {pid}\": the same bytes"
        )),
        "{text}"
    );
    assert!(
        text.contains("what the child wrote at offset 64: \"hello back from the child, pid "),
        "{text}"
    );
    for row in [
        "ipc Pipe    :",
        "ipc Queue   :",
        "Manager dict:",
        "OS pipe     :",
    ] {
        assert!(text.contains(row), "{text}");
    }
    assert_eq!(
        text.matches("x faster than the OS pipe").count(),
        3,
        "{text}"
    );
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("end of the tour: /dev/shm holds nothing of its own (no ipc.mgr-")
            && last.contains(&format!("ipc.tour-{pid}")),
        "{text}"
    );
    assert!(!std::path::Path::new(&format!("/dev/shm/ipc.tour-{pid}")).exists());
}

/// The tour's pid, from the line the parent prints in step 5.
fn out_pid(text: &str) -> u32 {
    let l = text
        .lines()
        .find(|l| l.starts_with("parent: wrote \"hello from the parent, pid "))
        .unwrap_or_else(|| panic!("no step 5 in {text}"));
    let digits: String = l["parent: wrote \"hello from the parent, pid ".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().expect("a pid")
}

/// Builds (if needed) and runs an example of this package; returns stdout.
fn run_example(name: &str) -> String {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_ipc-examples"))
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    if !exe.exists() {
        let st = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", "ipc-examples", "--example", name])
            .status()
            .expect("cargo build");
        assert!(st.success());
    }
    let out = std::process::Command::new(&exe)
        .output()
        .expect("run the example");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn quickstart_example_runs() {
    let text = run_example("quickstart");
    assert!(text.contains("parent got job #1 \"hello\""), "{text}");
    assert!(text.contains("child got done #1"), "{text}");
}

#[test]
fn processes_example_runs() {
    let text = run_example("processes");
    assert!(
        text.contains("worker returned 7 and put 49 on the queue"),
        "{text}"
    );
}

#[test]
fn pools_example_runs() {
    let text = run_example("pools");
    let mut squares: Vec<u64> = text.lines().filter_map(|l| l.parse().ok()).collect();
    squares.sort();
    assert_eq!(squares, vec![0, 1, 4, 9], "{text}");
    assert_eq!(text.matches("done: true").count(), 2, "{text}");
}
