//! `ipc inspect NAME`: a region's header, then what it holds.

use std::collections::HashSet;

use ipc_core::inspect::{LockOwner, LockState};
use ipc_core::region::{Kind, Region, RegionInfo, VERSION};
use ipc_core::sync::{Barrier, Event, Semaphore};
use serde_json::{json, Value};

use crate::list::{invalid_reason, stale_names, Status};
use crate::out;
use crate::Failure;

/// What a region holds: JSON for scripts, lines for people.
struct Detail {
    json: Value,
    lines: Vec<String>,
}

pub(crate) fn inspect(name: &str, json: bool) -> Result<(), Failure> {
    let fail = |source| Failure::Region {
        name: name.to_owned(),
        source,
    };
    let info = Region::info(name).map_err(|e| match e {
        e @ ipc_core::Error::Incompatible { .. } => Failure::Refused {
            name: name.to_owned(),
            reason: format!("{}: {e}", invalid_reason(&e)),
        },
        e => fail(e),
    })?;
    let stale: HashSet<String> = stale_names()?;
    let status = Status::of(&Ok(info.clone()), &stale);
    let detail = if info.version != VERSION {
        Err(format!(
            "layout version {} (this tool reads version {VERSION}): contents not shown",
            info.version
        ))
    } else if !info.ready {
        Err("not initialised: its creator has not finished (or died) setting it up".to_owned())
    } else {
        detail(&info).map_err(|e| format!("its contents cannot be read: {e}"))
    };
    let alive = info.creator.is_alive();
    let age = out::file_age(name);
    if json {
        let mut v = json!({
            "name": info.name,
            "kind": info.kind.map(|k| format!("{k:?}")),
            "size": info.len,
            "version": info.version,
            "creator_pid": info.creator.id,
            "creator_alive": alive,
            "ready": info.ready,
            "age_seconds": age.map(|a| a.as_secs()),
            "status": status.as_str(),
        });
        match &detail {
            Ok(d) => v["detail"] = d.json.clone(),
            Err(e) => v["error"] = Value::from(e.clone()),
        }
        println!("{v}");
    } else {
        println!("name:     {}", info.name);
        println!("kind:     {}", out::kind(info.kind));
        println!(
            "size:     {} (layout version {})",
            out::size(info.len),
            info.version
        );
        println!(
            "creator:  pid {} ({})",
            info.creator.id,
            if alive { "alive" } else { "dead" }
        );
        if let Some(a) = age {
            println!("age:      {}", out::age(a));
        }
        println!("status:   {}", status.as_str());
        match &detail {
            Ok(d) => d.lines.iter().for_each(|l| println!("{l}")),
            Err(e) => println!("contents: {e}"),
        }
    }
    // A region whose contents could not be read is a failure for scripts.
    detail.map(|_| ()).map_err(|reason| Failure::Shown {
        name: name.to_owned(),
        reason,
    })
}

fn detail(info: &RegionInfo) -> ipc_core::Result<Detail> {
    let name = info.name.as_str();
    Ok(match info.kind {
        Some(Kind::Queue) => {
            let st = ipc_core::inspect::queue(&Region::open(name, Kind::Queue)?)?;
            let mut lines = vec![
                format!("depth:    {} of {} messages", st.depth, st.capacity),
                format!(
                    "largest:  {} queued, {} accepted",
                    out::size(st.largest_queued as u64),
                    out::size(st.max_message_size as u64)
                ),
                format!(
                    "inline:   up to {} a message; larger ones in {} payload block{} now",
                    out::size(st.slot_size as u64),
                    st.blocks_in_use,
                    if st.blocks_in_use == 1 { "" } else { "s" }
                ),
                format!(
                    "slots:    {} held by dead processes, {} by live ones (in progress)",
                    st.held_by_dead, st.held_by_live
                ),
                format!(
                    "users:    {} registered processes ({} alive)",
                    st.processes_alive + st.processes_dead,
                    st.processes_alive
                ),
            ];
            if st.tombstones > 0 {
                lines.push(format!(
                    "skipped:  {} slots left by producers that died",
                    st.tombstones
                ));
            }
            if st.unknown_claims > 0 {
                lines.push(format!(
                    "garbage:  {} slots claimed by no known process",
                    st.unknown_claims
                ));
            }
            if st.closed {
                lines.push("closed:   yes".into());
            }
            if st.unfinished > 0 {
                lines.push(format!("unfinished tasks: {}", st.unfinished));
            }
            Detail {
                json: json!({
                    "depth": st.depth,
                    "capacity": st.capacity,
                    "max_message_size": st.max_message_size,
                    "largest_queued": st.largest_queued,
                    "slot_size": st.slot_size,
                    "blocks_in_use": st.blocks_in_use,
                    "slots_held_by_dead": st.held_by_dead,
                    "slots_held_by_live": st.held_by_live,
                    "tombstones": st.tombstones,
                    "unknown_claims": st.unknown_claims,
                    "processes_alive": st.processes_alive,
                    "processes_dead": st.processes_dead,
                    "closed": st.closed,
                    "unfinished": st.unfinished,
                }),
                lines,
            }
        }
        Some(k @ (Kind::Lock | Kind::RLock | Kind::Condition)) => {
            lock_detail(ipc_core::inspect::lock(name, k)?)
        }
        Some(Kind::Event) => {
            let set = Event::open(name)?.is_set();
            Detail {
                json: json!({ "set": set }),
                lines: vec![format!("set:      {}", if set { "yes" } else { "no" })],
            }
        }
        Some(Kind::Semaphore) => {
            let value = Semaphore::open(name)?.value();
            Detail {
                json: json!({ "value": value }),
                lines: vec![format!("value:    {value}")],
            }
        }
        Some(Kind::Barrier) => {
            let b = Barrier::open(name)?;
            let (parties, waiting, broken) = (b.parties(), b.n_waiting(), b.broken());
            Detail {
                json: json!({ "parties": parties, "waiting": waiting, "broken": broken }),
                lines: vec![
                    format!("parties:  {parties}"),
                    format!("waiting:  {waiting}"),
                    format!("broken:   {}", if broken { "yes" } else { "no" }),
                ],
            }
        }
        Some(Kind::Manager) => manager_detail(name)?,
        _ => Detail {
            json: json!({}),
            lines: Vec::new(),
        },
    })
}

fn owner_json(o: &LockOwner) -> Value {
    json!({ "tid": o.tid, "pid": o.pid, "alive": o.alive })
}

fn lock_detail(st: LockState) -> Detail {
    let mut lines = vec![match &st.owner {
        None => "owner:    none (unlocked)".to_owned(),
        Some(o) => format!(
            "owner:    tid {}{} ({})",
            o.tid,
            o.pid.map(|p| format!(", pid {p}")).unwrap_or_default(),
            if o.alive {
                "alive"
            } else {
                "dead: the next acquirer gets OwnerDied"
            }
        ),
    }];
    if let Some(c) = st.count {
        lines.push(format!("depth:    {c} (recursive acquisitions)"));
    }
    if let Some(w) = st.waiters {
        lines.push(format!("waiters:  {w}"));
    }
    Detail {
        json: json!({
            "locked": st.owner.is_some(),
            "owner": st.owner.as_ref().map(owner_json),
            "contended": st.contended,
            "count": st.count,
            "waiters": st.waiters,
        }),
        lines,
    }
}

fn manager_detail(name: &str) -> ipc_core::Result<Detail> {
    let st = ipc_manager::inspect::manager(name)?;
    let cpu = st.server_cpu.map(|d| format!("{:.2}s", d.as_secs_f64()));
    let mut lines = vec![
        format!(
            "server:   pid {} ({}, {}){}",
            st.server_pid,
            st.state,
            if st.server_alive { "alive" } else { "dead" },
            cpu.as_ref()
                .map(|c| format!(", {c} CPU"))
                .unwrap_or_default()
        ),
        format!("clients:  {} of {} slots", st.clients.len(), st.slots),
    ];
    for c in &st.clients {
        lines.push(format!(
            "  pid {:<8} {}",
            c.pid,
            if c.alive {
                "alive"
            } else {
                "dead (reclaimed soon)"
            }
        ));
    }
    lines.push(format!("objects:  {}", st.objects.len()));
    for o in &st.objects {
        lines.push(format!("  {:<10} {}", out::kind(o.kind), o.name));
    }
    Ok(Detail {
        json: json!({
            "state": st.state,
            "server_pid": st.server_pid,
            "server_alive": st.server_alive,
            "server_cpu_seconds": st.server_cpu.map(|d| d.as_secs_f64()),
            "slots": st.slots,
            "clients": st.clients.iter().map(|c| json!({ "pid": c.pid, "alive": c.alive })).collect::<Vec<_>>(),
            "objects": st.objects.iter().map(|o| json!({ "name": o.name, "kind": o.kind.map(|k| format!("{k:?}")) })).collect::<Vec<_>>(),
        }),
        lines,
    })
}
