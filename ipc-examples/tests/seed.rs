//! Each seed example runs and shows the behaviour the seed describes.

use std::process::Command;

fn run(exe: &str) -> String {
    let out = Command::new(exe).output().expect("run the example");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{exe} failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn zombie_shows_z_then_gone_after_reaping() {
    let t = run(env!("CARGO_BIN_EXE_zombie"));
    assert!(t.contains("222"), "{t}");
    assert_eq!(t.matches("111").count(), 3, "{t}");
    assert!(t.contains("state before reaping: Z"), "{t}");
    assert!(t.contains("state after reaping: gone"), "{t}");
    assert!(t.contains("exit code: Some(0)"), "{t}");
}

#[test]
fn orphan_keeps_working_after_its_parent_exits_and_is_adopted() {
    // stdout is a pipe: reading to the end waits for the orphan too.
    let t = run(env!("CARGO_BIN_EXE_orphan"));
    let parent_line = t
        .lines()
        .find(|l| l.starts_with("111"))
        .expect("parent line");
    let parent: String = parent_line.split_whitespace().nth(2).unwrap().to_owned();
    let lines: Vec<&str> = t.lines().filter(|l| l.starts_with("222")).collect();
    assert_eq!(lines.len(), 5, "{t}");
    let last = lines.last().unwrap();
    assert!(
        last.contains("adopted") && !last.contains(&format!("pid {parent},")),
        "{t}"
    );
}

#[test]
fn entry_function_prints_111_once_then_333_then_222() {
    let t = run(env!("CARGO_BIN_EXE_entry_function"));
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines, vec!["It will be reload: 111", "333", "222"], "{t}");
}

#[test]
fn fork_returns_the_child_pid_to_the_parent_and_zero_to_the_child() {
    let t = run(env!("CARGO_BIN_EXE_fork"));
    let first: Vec<&str> = t.lines().collect();
    assert!(first.contains(&"0"), "{t}");
    let child_pid = first
        .iter()
        .find_map(|l| l.parse::<u32>().ok().filter(|p| *p != 0))
        .expect("child pid");
    assert!(
        t.contains(&format!("[INFO] do something by process {child_pid}")),
        "{t}"
    );
    assert_eq!(t.matches("is over").count(), 2, "{t}");
}

#[test]
fn process_example_joins_four_then_prints_2222() {
    let t = run(env!("CARGO_BIN_EXE_process"));
    let lines: Vec<&str> = t.lines().filter(|l| l.starts_with("1 2 ")).collect();
    assert_eq!(lines.len(), 4, "{t}");
    assert_eq!(t.lines().last(), Some("2222"), "{t}");
    assert!(t.contains("first finished:"), "{t}");
}

#[test]
fn queue_example_delivers_0_to_20_across_two_consumers() {
    let t = run(env!("CARGO_BIN_EXE_queue"));
    let mut nums: Vec<u32> = t.lines().filter_map(|l| l.parse().ok()).collect();
    nums.sort();
    assert_eq!(nums, (0..=20).collect::<Vec<_>>(), "{t}");
    assert_eq!(t.matches("over").count(), 2, "{t}");
}

#[test]
fn pipe_example_receives_0_to_19_in_order() {
    let t = run(env!("CARGO_BIN_EXE_pipe"));
    let nums: Vec<u32> = t.lines().filter_map(|l| l.parse().ok()).collect();
    assert_eq!(nums, (0..20).collect::<Vec<_>>(), "{t}");
}

#[test]
fn pool_example_maps_imaps_and_imaps_unordered() {
    let t = run(env!("CARGO_BIN_EXE_pool"));
    let lines: Vec<&str> = t.lines().collect();
    assert!(lines.contains(&"true"), "{t}");
    assert!(lines.contains(&"[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"), "{t}");
    assert!(
        lines.contains(&"imap: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"),
        "{t}"
    );
    let un = lines
        .iter()
        .find(|l| l.starts_with("imap_unordered: "))
        .expect("unordered line");
    let mut v: Vec<u32> = un["imap_unordered: [".len()..un.len() - 1]
        .split(", ")
        .map(|x| x.parse().unwrap())
        .collect();
    v.sort();
    assert_eq!(v, (0..10).collect::<Vec<_>>());
    assert_eq!(t.matches("[INFO] get").count(), 30, "{t}");
}

#[test]
fn executor_example_first_completed_then_as_completed_map_and_cancel() {
    let t = run(env!("CARGO_BIN_EXE_executor"));
    let lines: Vec<&str> = t.lines().collect();
    let main_at = lines
        .iter()
        .position(|l| *l == "__Main__")
        .expect("__Main__");
    // wait(FIRST_COMPLETED) returned once the fastest task (1 unit) was
    // done, long before the slowest ones (4 units).
    assert!(lines[..main_at].contains(&"This time is 1"), "{t}");
    assert!(!lines[..main_at].contains(&"This time is 4"), "{t}");
    // as_completed yields every result, fastest first.
    let results: Vec<u64> = lines[main_at + 1..]
        .iter()
        .filter_map(|l| l.parse().ok())
        .take(5)
        .collect();
    assert_eq!(results[0], 1, "{t}");
    let mut all = results.clone();
    all.sort();
    assert_eq!(all, vec![1, 2, 3, 4, 4], "{t}");
    assert!(lines.contains(&"map: [1, 2, 1]"), "{t}");
    assert!(lines.contains(&"cancel running: false"), "{t}");
    assert!(lines.contains(&"cancel queued: true"), "{t}");
}

#[test]
fn manager_queue_example_delivers_0_to_20_through_pool_workers_twice() {
    let t = run(env!("CARGO_BIN_EXE_manager_queue"));
    let (managed, plain) = t.split_once("-- plain ipc Queue(2)").expect("both halves");
    for half in [managed, plain] {
        let mut nums: Vec<u32> = half.lines().filter_map(|l| l.parse().ok()).collect();
        nums.sort();
        assert_eq!(nums, (0..=20).collect::<Vec<_>>(), "{t}");
        assert_eq!(half.matches("over").count(), 2, "{t}");
    }
}

#[test]
fn manager_dict_example_prints_the_dict_filled_by_another_process() {
    let t = run(env!("CARGO_BIN_EXE_manager_dict"));
    assert_eq!(
        t.trim(),
        "{0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7, 8: 8, 9: 9}",
        "{t}"
    );
}
