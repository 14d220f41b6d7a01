//! `ipc ls`, `ipc gc` and `ipc rm`.

use std::collections::HashSet;

use ipc_core::region::{Kind, Region, RegionInfo, VERSION};
use ipc_core::Error;
use serde_json::{json, Value};

use crate::out;
use crate::Failure;

/// One `ipc.*` file of this user in `/dev/shm`.
pub(crate) struct Entry {
    pub name: String,
    /// Its header, or why it is not a valid region.
    pub info: Result<RegionInfo, Error>,
}

/// What state a region is in, as `ls` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Its creator has not finished initialising it (or died doing so).
    Starting,
    /// Its creator runs.
    Live,
    /// Its creator is dead but a process still maps or holds it.
    InUse,
    /// Its creator is dead and nobody uses it: `gc` removes it.
    Stale,
    /// Not a valid region (see the entry's error).
    Invalid,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Live => "live",
            Status::InUse => "in-use",
            Status::Stale => "stale",
            Status::Invalid => "invalid",
        }
    }

    pub(crate) fn of(info: &Result<RegionInfo, Error>, stale: &HashSet<String>) -> Status {
        match info {
            Err(_) => Status::Invalid,
            Ok(i) if stale.contains(&i.name) => Status::Stale,
            Ok(i) if i.creator.is_alive() => {
                if i.ready {
                    Status::Live
                } else {
                    Status::Starting
                }
            }
            Ok(_) => Status::InUse,
        }
    }
}

/// Every `ipc.*` file in `/dev/shm` that belongs to this user (valid or
/// not), sorted by name. Other users' files are not ours to show.
pub(crate) fn entries() -> Result<Vec<Entry>, Failure> {
    let dir = std::fs::read_dir("/dev/shm").map_err(Failure::Io)?;
    let mut v: Vec<Entry> = dir
        .flatten()
        .filter_map(|e| {
            let f = e.file_name();
            let name = f.to_str()?.strip_prefix("ipc.")?.to_owned();
            let info = Region::info(&name);
            if matches!(info, Err(Error::ForeignOwner { .. })) {
                return None;
            }
            Some(Entry { name, info })
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(v)
}

/// Names `gc` would remove now.
pub(crate) fn stale_names() -> Result<HashSet<String>, Failure> {
    Ok(Region::gc_candidates()?
        .into_iter()
        .map(|i| i.name)
        .collect())
}

/// Live clients of the manager `info` describes, if it is a usable one.
fn manager_clients(info: &RegionInfo) -> Option<usize> {
    if info.kind != Some(Kind::Manager) || !info.ready || info.version != VERSION {
        return None;
    }
    let st = ipc_manager::inspect::manager(&info.name).ok()?;
    Some(st.clients.iter().filter(|c| c.alive).count())
}

/// Why an entry is invalid, in a few words.
pub(crate) fn invalid_reason(e: &Error) -> String {
    match e {
        Error::Incompatible { what: "magic", .. } => "not an ipc region (no ipc header)".to_owned(),
        e => e.to_string(),
    }
}

pub(crate) fn ls(json: bool) -> Result<(), Failure> {
    let stale = stale_names()?;
    let entries = entries()?;
    let mut rows = vec![vec![
        "NAME".into(),
        "KIND".into(),
        "SIZE".into(),
        "CREATOR".into(),
        "AGE".into(),
        "STATUS".into(),
    ]];
    let mut out = Vec::new();
    for e in &entries {
        let status = Status::of(&e.info, &stale);
        let age = out::file_age(&e.name);
        match &e.info {
            Ok(i) => {
                let alive = i.creator.is_alive();
                let clients = manager_clients(i);
                let mut st = status.as_str().to_owned();
                if i.version != VERSION {
                    st.push_str(&format!(
                        ", layout v{} (this tool reads v{VERSION})",
                        i.version
                    ));
                }
                if let Some(n) = clients {
                    st.push_str(&format!(", {n} client{}", if n == 1 { "" } else { "s" }));
                }
                rows.push(vec![
                    e.name.clone(),
                    out::kind(i.kind),
                    out::size(i.len),
                    format!("{} {}", i.creator.id, if alive { "alive" } else { "dead" }),
                    age.map_or_else(|| "-".into(), out::age),
                    st,
                ]);
                out.push(json!({
                    "name": e.name,
                    "kind": i.kind.map(|k| format!("{k:?}")),
                    "size": i.len,
                    "version": i.version,
                    "creator_pid": i.creator.id,
                    "creator_alive": alive,
                    "ready": i.ready,
                    "age_seconds": age.map(|a| a.as_secs()),
                    "status": status.as_str(),
                    "stale": status == Status::Stale,
                    "clients": clients,
                }));
            }
            Err(err) => {
                let size = std::fs::symlink_metadata(format!("/dev/shm/ipc.{}", e.name))
                    .map(|m| m.len())
                    .ok();
                rows.push(vec![
                    e.name.clone(),
                    "-".into(),
                    size.map_or_else(|| "-".into(), out::size),
                    "-".into(),
                    age.map_or_else(|| "-".into(), out::age),
                    format!("invalid: {}", invalid_reason(err)),
                ]);
                out.push(json!({
                    "name": e.name,
                    "kind": Value::Null,
                    "size": size,
                    "age_seconds": age.map(|a| a.as_secs()),
                    "status": "invalid",
                    "stale": false,
                    "error": err.to_string(),
                }));
            }
        }
    }
    if json {
        println!("{}", json!({ "regions": out }));
    } else if entries.is_empty() {
        println!("no ipc regions in /dev/shm");
    } else {
        out::table(&rows, &[2, 4]);
    }
    Ok(())
}

pub(crate) fn gc(dry_run: bool, names: &[String], json: bool) -> Result<(), Failure> {
    for n in names {
        ipc_core::region::validate_name(n).map_err(|source| Failure::Region {
            name: n.clone(),
            source,
        })?;
    }
    let only: HashSet<&str> = names.iter().map(String::as_str).collect();
    let wanted = |i: &RegionInfo| only.is_empty() || only.contains(i.name.as_str());
    let before: Vec<RegionInfo> = Region::list()?;
    let chosen: Vec<RegionInfo> = if dry_run {
        Region::gc_candidates()?
            .into_iter()
            .filter(|i| wanted(i))
            .collect()
    } else {
        let removed: HashSet<String> = Region::gc_where(wanted)?.into_iter().collect();
        before
            .into_iter()
            .filter(|i| removed.contains(&i.name))
            .collect()
    };
    if json {
        let v: Vec<Value> = chosen
            .iter()
            .map(|i| {
                json!({
                    "name": i.name,
                    "kind": i.kind.map(|k| format!("{k:?}")),
                    "size": i.len,
                    "creator_pid": i.creator.id,
                })
            })
            .collect();
        let key = if dry_run { "would_remove" } else { "removed" };
        println!("{}", json!({ key: v, "dry_run": dry_run }));
        return Ok(());
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    for i in &chosen {
        println!(
            "{verb} {} ({}, {}, creator pid {} dead)",
            i.name,
            out::kind(i.kind),
            out::size(i.len),
            i.creator.id
        );
    }
    if chosen.is_empty() {
        println!("no stale regions");
    }
    Ok(())
}

pub(crate) fn rm(name: &str, force: bool, json: bool) -> Result<(), Failure> {
    let refuse = |reason: String| Failure::Refused {
        name: name.to_owned(),
        reason,
    };
    let info = match Region::info(name) {
        Ok(i) => Some(i),
        Err(
            e @ (Error::NotFound { .. } | Error::InvalidName { .. } | Error::ForeignOwner { .. }),
        ) => {
            return Err(Failure::Region {
                name: name.to_owned(),
                source: e,
            })
        }
        Err(_) if force => None,
        Err(e) => {
            return Err(refuse(format!(
                "{}; refusing to remove it without --force",
                invalid_reason(&e)
            )))
        }
    };
    let removed = match &info {
        None => {
            Region::unlink(name)?;
            true
        }
        Some(i) if force => i.unlink()?,
        Some(i) => {
            if i.creator.is_alive() {
                return Err(refuse(format!(
                    "live: its creator (pid {}) is running; use --force to remove it anyway",
                    i.creator.id
                )));
            }
            let removed = Region::gc_where(|r| r.name == name)?;
            if removed.is_empty() {
                return Err(refuse(
                    "in use: its creator is dead but a process still maps or holds it; \
                     use --force to remove it anyway"
                        .to_owned(),
                ));
            }
            true
        }
    };
    if json {
        println!("{}", json!({ "removed": removed, "name": name }));
    } else if removed {
        println!("removed {name}");
    } else {
        println!("{name} was already gone");
    }
    Ok(())
}
