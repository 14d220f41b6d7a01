//! What a demo left in `/dev/shm`.
//!
//! A named region `n` is the file `/dev/shm/ipc.<n>`; the demos name the
//! regions of one run `<base>` or `<base>.<part>` (a Manager's objects are
//! `<manager>.<pid>.<n>`), so everything of a run matches one prefix.

/// The `/dev/shm` files of region `base` and of the regions named
/// `base.<anything>`, sorted.
///
/// # Examples
///
/// ```
/// use ipc_core::sync::Event;
/// use ipc_examples::shm::leftovers;
/// let base = format!("doc-leftovers-{}", std::process::id());
/// let stop = Event::create(&format!("{base}.stop"))?;
/// assert_eq!(leftovers(&base), [format!("ipc.{base}.stop")]);
/// drop(stop); // the creator removes its region
/// assert!(leftovers(&base).is_empty());
/// # Ok::<(), ipc_core::Error>(())
/// ```
pub fn leftovers(base: &str) -> Vec<String> {
    let exact = format!("ipc.{base}");
    let prefix = format!("{exact}.");
    let mut found: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|f| *f == exact || f.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// The line a demo ends with: that `/dev/shm` holds nothing of the
/// regions named by `bases` (see [`leftovers`]), or what it still holds.
///
/// # Examples
///
/// ```
/// let line = ipc_examples::shm::report(&["doc-report-nothing"]);
/// assert_eq!(
///     line,
///     "/dev/shm holds nothing of its own (no ipc.doc-report-nothing or ipc.doc-report-nothing.*)"
/// );
/// ```
pub fn report(bases: &[&str]) -> String {
    let left: Vec<String> = bases.iter().flat_map(|b| leftovers(b)).collect();
    if left.is_empty() {
        let checked = match bases {
            [b] => format!("no ipc.{b} or ipc.{b}.*"),
            _ => {
                let all: Vec<String> = bases.iter().map(|b| format!("ipc.{b}")).collect();
                format!("no {}, nor any of their .* parts", all.join(", "))
            }
        };
        format!("/dev/shm holds nothing of its own ({checked})")
    } else {
        format!(
            "/dev/shm still holds {} (Region::gc() removes them once their creator is dead and nobody maps them)",
            left.join(", ")
        )
    }
}
