//! The client's reply reader thread: pops the replies the workers push
//! to this client's list and records them, failing what is outstanding
//! when the connection is lost for good or Redis restarted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use redis::Value;

use super::{Failure, Shared};
use crate::conn::{reply, Conn};
use crate::Result;

/// Up to 256 replies: what is there now, else what comes within half a
/// second.
fn fetch(conn: &mut Conn, key: &str) -> Result<Vec<Vec<u8>>> {
    let v: Value = conn.run(redis::cmd("LPOP").arg(key).arg(256))?;
    let got = reply::array(v)?;
    if !got.is_empty() {
        return got.into_iter().map(reply::bytes).collect();
    }
    let block = Duration::from_millis(500);
    let v: Value = conn.blocking(redis::cmd("BLPOP").arg(key).arg(0.5), block)?;
    let mut kv = reply::array(v)?.into_iter();
    Ok(match (kv.next(), kv.next()) {
        (Some(_), Some(b)) => vec![reply::bytes(b)?],
        _ => Vec::new(),
    })
}

/// The reader thread. It holds the client only while recording replies,
/// so dropping the last handle stops it.
pub(super) fn read_replies(
    client: Weak<Shared>,
    mut conn: Conn,
    key: String,
    stop: Arc<AtomicBool>,
    mut run_id: String,
    connect_timeout: Duration,
) {
    let mut lost_since: Option<Instant> = None;
    // Acquire: pairs with the Release in `Shared::drop`.
    while !stop.load(Ordering::Acquire) {
        let mut restarted = false;
        let r = if lost_since.is_some() {
            // Reconnected to the same server? Else its lists are gone.
            conn.run_id().map(|id| {
                if id != run_id {
                    restarted = true;
                    run_id = id;
                }
            })
        } else {
            Ok(())
        }
        .and_then(|()| fetch(&mut conn, &key));
        if restarted {
            if let Some(c) = client.upgrade() {
                c.fail_outstanding(Failure::Lost(
                    "Redis restarted; the tasks it held are lost".into(),
                ));
            }
        }
        match r {
            Ok(batch) => {
                lost_since = None;
                if batch.is_empty() {
                    continue;
                }
                let Some(c) = client.upgrade() else { return };
                for b in batch {
                    c.dispatch(&b);
                }
            }
            Err(e) => {
                let since = *lost_since.get_or_insert_with(Instant::now);
                // Past the reconnect window, whatever is outstanding
                // fails (again and again, for tasks submitted meanwhile).
                if since.elapsed() >= connect_timeout || !e.is_connection() {
                    let Some(c) = client.upgrade() else { return };
                    c.fail_outstanding(Failure::Lost(e.to_string()));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}
