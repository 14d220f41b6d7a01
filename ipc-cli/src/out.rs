//! Formatting shared by the commands: sizes, ages, kinds, tables.

use std::time::{Duration, SystemTime};

use ipc_core::region::Kind;

/// `1.5 KiB`, `64 B`, `8.3 MiB`.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `42s`, `3m12s`, `5h04m`, `2d03h`.
pub(crate) fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// How long ago the region file was created (its birth time where the
/// file system records one, else its last change).
pub(crate) fn file_age(name: &str) -> Option<Duration> {
    let m = std::fs::symlink_metadata(format!("/dev/shm/ipc.{name}")).ok()?;
    let t = m.created().or_else(|_| m.modified()).ok()?;
    SystemTime::now().duration_since(t).ok()
}

/// A kind's name as the API spells it, `-` if unknown.
pub(crate) fn kind(k: Option<Kind>) -> String {
    k.map_or_else(|| "-".to_owned(), |k| format!("{k:?}"))
}

/// Prints rows as columns separated by two spaces, the first row a header.
/// Columns listed in `right` are right-aligned.
pub(crate) fn table(rows: &[Vec<String>], right: &[usize]) {
    let Some(first) = rows.first() else { return };
    let mut width = vec![0; first.len()];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = width[i] - c.chars().count();
            let last = i + 1 == r.len();
            if right.contains(&i) {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(c);
            } else {
                line.push_str(c);
                if !last {
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
        }
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages_read_well() {
        assert_eq!(size(64), "64 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(8 << 20), "8.0 MiB");
        assert_eq!(age(Duration::from_secs(42)), "42s");
        assert_eq!(age(Duration::from_secs(192)), "3m12s");
        assert_eq!(age(Duration::from_secs(3 * 86_400 + 7200)), "3d02h");
    }
}
