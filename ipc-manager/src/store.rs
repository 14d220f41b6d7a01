//! What the server hosts: the name registry, adopted shared-memory
//! objects, containers (as encoded bytes) and custom services.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ipc_core::region::{Kind, Region};
use ipc_core::sys::proc::TaskId;

use crate::wire::{Bytes, Container, DictOp, Entry, Fault, ListOp, Request, Response, Val};

/// A custom service instance: decodes its request bytes, answers encoded
/// response bytes (or says why it could not).
pub(crate) type Instance = Box<dyn FnMut(&[u8]) -> Result<Vec<u8>, String> + Send>;
/// Makes instances of one registered custom type.
pub(crate) type Factory = Box<dyn Fn() -> Instance + Send>;

/// How long an unheld container waits for a new holder before it is freed.
const ORPHAN_GRACE: Duration = Duration::from_secs(1);

/// Largest number of elements a container may hold (a client cannot make
/// the server allocate without bound through one request).
const MAX_ITEMS: usize = 1 << 28;

/// How many stored values hold each unnamed container (through a proxy of
/// it stored in another container), and the containers whose last such
/// holder just went.
#[derive(Default)]
struct RefCounts {
    counts: HashMap<u64, u32>,
    released: Vec<u64>,
}

type SharedCounts = Arc<Mutex<RefCounts>>;

fn lock(c: &SharedCounts) -> MutexGuard<'_, RefCounts> {
    // Only the server thread uses it, and nothing panics while holding it.
    c.lock().unwrap_or_else(|p| p.into_inner())
}

/// The containers one stored value holds; dropping the value (it is
/// overwritten or removed, or its own container is freed) lets them go.
struct Refs {
    ids: Vec<u64>,
    counts: SharedCounts,
}

impl Drop for Refs {
    fn drop(&mut self) {
        let mut c = lock(&self.counts);
        for id in &self.ids {
            if let Some(n) = c.counts.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    c.counts.remove(id);
                    c.released.push(*id);
                }
            }
        }
    }
}

/// A value stored in a container: its encoded bytes and what it holds.
struct Stored {
    bytes: Bytes,
    /// Kept for its `Drop`; `None` for a value that holds no container
    /// (the common case).
    _refs: Option<Refs>,
}

/// Makes a stored value of `v`, counting it as a holder of every unnamed
/// container it references that still exists (others are ignored: named
/// containers are never freed, and an unknown id holds nothing).
fn admit(
    holds: &HashMap<u64, HashMap<u64, u32>>,
    orphans: &mut HashMap<u64, Instant>,
    counts: &SharedCounts,
    v: Val,
) -> Stored {
    let ids: Vec<u64> = v
        .refs
        .into_iter()
        .filter(|id| holds.contains_key(id))
        .collect();
    if ids.is_empty() {
        return Stored {
            bytes: v.bytes,
            _refs: None,
        };
    }
    let mut c = lock(counts);
    for id in &ids {
        *c.counts.entry(*id).or_insert(0) += 1;
        orphans.remove(id);
    }
    Stored {
        bytes: v.bytes,
        _refs: Some(Refs {
            ids,
            counts: counts.clone(),
        }),
    }
}

/// Insertion-ordered map of encoded keys to stored values (Python dicts
/// keep insertion order).
#[derive(Default)]
struct OrderedMap {
    index: HashMap<Bytes, (u64, Stored)>,
    order: BTreeMap<u64, Bytes>,
    next: u64,
}

impl OrderedMap {
    fn get(&self, k: &[u8]) -> Option<&Bytes> {
        self.index.get(k).map(|(_, v)| &v.bytes)
    }

    fn insert(&mut self, k: Bytes, v: Stored) -> Option<Stored> {
        if let Some((_, old)) = self.index.get_mut(&k) {
            return Some(std::mem::replace(old, v));
        }
        let seq = self.next;
        self.next += 1;
        self.order.insert(seq, k.clone());
        self.index.insert(k, (seq, v));
        None
    }

    fn remove(&mut self, k: &[u8]) -> Option<Stored> {
        let (seq, v) = self.index.remove(k)?;
        self.order.remove(&seq);
        Some(v)
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.order
            .values()
            .filter_map(|k| self.index.get(k).map(|(_, v)| (k, &v.bytes)))
    }

    fn clear(&mut self) {
        self.index.clear();
        self.order.clear();
    }
}

enum Object {
    Map(OrderedMap),
    List(Vec<Stored>),
    Service(Instance),
}

struct Hosted {
    what: Container,
    obj: Object,
}

/// The server's state.
pub(crate) struct Store {
    prefix: String,
    names: HashMap<String, Entry>,
    /// Adopted regions: kept mapped (so `Region::gc` leaves them alone) and
    /// unlinked when the store drops.
    regions: Vec<Region>,
    objects: HashMap<u64, Hosted>,
    next_id: u64,
    factories: HashMap<String, (u64, Factory)>,
    /// Holders of each unnamed container: client process identity ->
    /// number of proxies. The container is freed when nobody holds it.
    holds: HashMap<u64, HashMap<u64, u32>>,
    /// Unheld containers and since when (freed after `ORPHAN_GRACE`).
    orphans: HashMap<u64, Instant>,
    /// Holds of unnamed containers by values stored in other containers.
    /// A container is unheld when no process and no stored value holds it.
    refs: SharedCounts,
    /// Set by a `Shutdown` request.
    pub stop: bool,
}

fn incompatible(expected: impl Into<String>, found: impl Into<String>) -> Response {
    Response::Fault(Fault::Incompatible(expected.into(), found.into()))
}

impl Store {
    /// An empty store for manager `name` with the registered custom types.
    pub fn new(name: &str, factories: HashMap<String, (u64, Factory)>) -> Store {
        Store {
            prefix: format!("{name}."),
            names: HashMap::new(),
            regions: Vec::new(),
            objects: HashMap::new(),
            next_id: 1,
            factories,
            holds: HashMap::new(),
            orphans: HashMap::new(),
            refs: SharedCounts::default(),
            stop: false,
        }
    }

    fn register(&mut self, name: Option<String>, entry: Entry) {
        if let Some(n) = name {
            self.names.insert(n, entry);
        }
    }

    fn name_taken(&self, name: &Option<String>) -> Option<Response> {
        let n = name.as_ref()?;
        if ipc_core::region::validate_name(n).is_err() {
            return Some(Response::Fault(Fault::Refused(format!(
                "invalid object name {n:?}"
            ))));
        }
        self.names
            .contains_key(n)
            .then(|| Response::Fault(Fault::AlreadyExists(n.clone())))
    }

    /// Marks container `id` for freeing if nobody holds it any more. It is
    /// freed after a grace period, so that a proxy handed to a child whose
    /// sender let go first (a moved `target_fn` argument, a fork-inherited
    /// copy not used yet) can still claim it.
    fn release_if_unheld(&mut self, id: u64) {
        if self.unheld(id) {
            self.orphans.entry(id).or_insert_with(Instant::now);
        }
    }

    /// Whether `id` is an unnamed container that no process and no stored
    /// value holds.
    fn unheld(&self, id: u64) -> bool {
        self.holds.get(&id).is_some_and(HashMap::is_empty)
            && !lock(&self.refs).counts.contains_key(&id)
    }

    /// Marks for freeing the containers whose last holding value just went.
    fn release_dropped_refs(&mut self) {
        let released = std::mem::take(&mut lock(&self.refs).released);
        for id in released {
            self.release_if_unheld(id);
        }
    }

    /// Frees the containers nobody claimed during the grace period.
    pub fn free_orphans(&mut self) {
        let now = Instant::now();
        let due: Vec<u64> = self
            .orphans
            .iter()
            .filter(|(_, t)| now.duration_since(**t) >= ORPHAN_GRACE)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.orphans.remove(&id);
            if self.unheld(id) {
                self.holds.remove(&id);
                // Its values let go of what they held: those follow after
                // their own grace period.
                self.objects.remove(&id);
            }
        }
        self.release_dropped_refs();
    }

    /// Drops the holds of client processes that died; frees what they were
    /// the last to hold.
    pub fn drop_dead_holders(&mut self) {
        let mut alive: HashMap<u64, bool> = HashMap::new();
        let mut emptied = Vec::new();
        for (id, holders) in &mut self.holds {
            holders.retain(|who, _| {
                *alive.entry(*who).or_insert_with(|| {
                    // Unreadable liveness (no descriptor left) is not death.
                    !matches!(crate::control::process_gone(TaskId::unpack(*who)), Ok(true))
                })
            });
            if holders.is_empty() {
                emptied.push(*id);
            }
        }
        for id in emptied {
            self.release_if_unheld(id);
        }
    }

    /// Answers one (validated) request from the client process `client`
    /// (its packed identity).
    pub fn handle(&mut self, req: Request, client: u64) -> Response {
        let r = self.answer(req, client);
        self.release_dropped_refs();
        r
    }

    fn answer(&mut self, req: Request, client: u64) -> Response {
        let Store {
            objects,
            holds,
            orphans,
            refs,
            ..
        } = self;
        let mut admit = |v: Val| admit(holds, orphans, refs, v);
        match req {
            Request::Incref { id } => match self.holds.get_mut(&id) {
                Some(h) => {
                    *h.entry(client).or_insert(0) += 1;
                    self.orphans.remove(&id);
                    Response::Unit
                }
                None if self.objects.contains_key(&id) => Response::Unit, // named
                None => Response::Fault(Fault::NotFound(format!("object #{id}"))),
            },
            Request::Decref { id } => {
                if let Some(h) = self.holds.get_mut(&id) {
                    if let Some(n) = h.get_mut(&client) {
                        *n -= 1;
                        if *n == 0 {
                            h.remove(&client);
                        }
                    }
                    self.release_if_unheld(id);
                }
                Response::Unit
            }
            Request::Ping => Response::Unit,
            Request::Shutdown => {
                self.stop = true;
                Response::Unit
            }
            Request::Names => {
                let mut v: Vec<String> = self.names.keys().cloned().collect();
                v.sort();
                Response::Names(v)
            }
            Request::Lookup { name } => match self.names.get(&name) {
                Some(e) => Response::Found(e.clone()),
                None => Response::Fault(Fault::NotFound(name)),
            },
            Request::Adopt {
                kind,
                region,
                tag,
                name,
            } => self.adopt(kind, region, tag, name),
            Request::Create {
                what,
                tag,
                name,
                service,
            } => self.create(what, tag, name, service, client),
            Request::Dict { id, op } => match objects.get_mut(&id) {
                Some(Hosted {
                    obj: Object::Map(m),
                    ..
                }) => dict(m, op, &mut admit),
                Some(h) => incompatible("dict or namespace", format!("{:?}", h.what)),
                None => Response::Fault(Fault::NotFound(format!("object #{id}"))),
            },
            Request::List { id, op } => match objects.get_mut(&id) {
                Some(Hosted {
                    obj: Object::List(l),
                    ..
                }) => list(l, op, &mut admit),
                Some(h) => incompatible("list", format!("{:?}", h.what)),
                None => Response::Fault(Fault::NotFound(format!("object #{id}"))),
            },
            Request::Call { id, arg } => match objects.get_mut(&id) {
                Some(Hosted {
                    obj: Object::Service(f),
                    ..
                }) => match f(&arg) {
                    Ok(v) => Response::Value(Some(v)),
                    Err(e) => Response::Fault(Fault::Refused(e)),
                },
                Some(h) => incompatible("custom object", format!("{:?}", h.what)),
                None => Response::Fault(Fault::NotFound(format!("object #{id}"))),
            },
        }
    }

    fn adopt(&mut self, kind: u32, region: String, tag: u64, name: Option<String>) -> Response {
        if let Some(r) = self.name_taken(&name) {
            return r;
        }
        let Some(k) = Kind::from_u32(kind).filter(|k| *k != Kind::Manager) else {
            return Response::Fault(Fault::Refused(format!("unknown object kind {kind}")));
        };
        if !region.starts_with(&self.prefix) {
            return Response::Fault(Fault::Refused(format!(
                "region {region:?} is not one of this manager's"
            )));
        }
        if self
            .regions
            .iter()
            .any(|r| r.name() == Some(region.as_str()))
        {
            return Response::Fault(Fault::AlreadyExists(region));
        }
        // No waiting: a region that is not ready yet (or never will be)
        // must not stall the server for everybody else.
        match Region::open_with(&region, k, 0, None, std::time::Duration::ZERO) {
            Ok(mut r) => {
                if let Err(e) = r.adopt() {
                    return Response::Fault(Fault::Refused(e.to_string()));
                }
                self.regions.push(r);
            }
            Err(e) => return Response::Fault(Fault::Refused(e.to_string())),
        }
        self.register(name, Entry::Shared { kind, region, tag });
        Response::Unit
    }

    fn create(
        &mut self,
        what: Container,
        tag: u64,
        name: Option<String>,
        service: Option<String>,
        client: u64,
    ) -> Response {
        if let Some(r) = self.name_taken(&name) {
            return r;
        }
        let obj = match (what, service) {
            (Container::Dict | Container::Namespace, None) => Object::Map(OrderedMap::default()),
            (Container::List, None) => Object::List(Vec::new()),
            (Container::Service, Some(s)) => match self.factories.get(&s) {
                Some((t, _)) if *t != tag => {
                    return incompatible(format!("custom type tag {tag:#x}"), format!("{t:#x}"))
                }
                Some((_, f)) => Object::Service(f()),
                None => {
                    return Response::Fault(Fault::Refused(format!(
                        "no custom type {s:?} is registered on this manager"
                    )))
                }
            },
            _ => return Response::Fault(Fault::Refused("malformed create request".into())),
        };
        let id = self.next_id;
        self.next_id += 1;
        self.objects.insert(id, Hosted { what, obj });
        if name.is_none() {
            self.holds.insert(id, HashMap::from([(client, 1)]));
        }
        self.register(name, Entry::Container { what, id, tag });
        Response::Id(id)
    }
}

/// One dict operation; `admit` makes the values it stores.
fn dict(m: &mut OrderedMap, op: DictOp, admit: &mut dyn FnMut(Val) -> Stored) -> Response {
    let full = |m: &OrderedMap| m.len() >= MAX_ITEMS;
    match op {
        DictOp::Get(k) => Response::Value(m.get(&k).cloned()),
        DictOp::Insert(k, v) => {
            if full(m) && m.get(&k).is_none() {
                return Response::Fault(Fault::TooLarge(m.len() as u64 + 1, MAX_ITEMS as u64));
            }
            Response::Value(m.insert(k, admit(v)).map(|old| old.bytes))
        }
        DictOp::Remove(k) => Response::Value(m.remove(&k).map(|old| old.bytes)),
        DictOp::Contains(k) => Response::Bool(m.get(&k).is_some()),
        DictOp::Len => Response::Len(m.len() as u64),
        DictOp::Keys => Response::Values(m.iter().map(|(k, _)| k.clone()).collect()),
        DictOp::Values => Response::Values(m.iter().map(|(_, v)| v.clone()).collect()),
        DictOp::Items => Response::Items(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        DictOp::Update(items) => {
            if m.len().saturating_add(items.len()) > MAX_ITEMS {
                return Response::Fault(Fault::TooLarge(
                    (m.len() + items.len()) as u64,
                    MAX_ITEMS as u64,
                ));
            }
            for (k, v) in items {
                m.insert(k, admit(v));
            }
            Response::Unit
        }
        DictOp::Clear => {
            m.clear();
            Response::Unit
        }
        DictOp::SetDefault(k, v) => match m.get(&k) {
            Some(old) => Response::Value(Some(old.clone())),
            None if full(m) => {
                Response::Fault(Fault::TooLarge(m.len() as u64 + 1, MAX_ITEMS as u64))
            }
            None => {
                let bytes = v.bytes.clone();
                m.insert(k, admit(v));
                Response::Value(Some(bytes))
            }
        },
        DictOp::CompareAndSet { key, expected, new } => {
            if m.get(&key) != expected.as_ref() {
                return Response::Bool(false);
            }
            if full(m) && expected.is_none() {
                return Response::Fault(Fault::TooLarge(m.len() as u64 + 1, MAX_ITEMS as u64));
            }
            m.insert(key, admit(new));
            Response::Bool(true)
        }
    }
}

/// Python's index rules: negative counts from the end.
fn index(i: i64, len: usize) -> Result<usize, Response> {
    let n = len as i64;
    let j = if i < 0 { i + n } else { i };
    if (0..n).contains(&j) {
        Ok(j as usize)
    } else {
        Err(Response::Fault(Fault::IndexOutOfRange(i, len as u64)))
    }
}

/// One list operation; `admit` makes the values it stores.
fn list(l: &mut Vec<Stored>, op: ListOp, admit: &mut dyn FnMut(Val) -> Stored) -> Response {
    let too_many = |l: &Vec<Stored>, more: usize| {
        (l.len().saturating_add(more) > MAX_ITEMS).then(|| {
            Response::Fault(Fault::TooLarge(
                l.len().saturating_add(more) as u64,
                MAX_ITEMS as u64,
            ))
        })
    };
    match op {
        ListOp::Push(v) => {
            if let Some(r) = too_many(l, 1) {
                return r;
            }
            l.push(admit(v));
            Response::Unit
        }
        ListOp::Extend(vs) => {
            if let Some(r) = too_many(l, vs.len()) {
                return r;
            }
            l.extend(vs.into_iter().map(admit));
            Response::Unit
        }
        ListOp::Get(i) => match index(i, l.len()) {
            Ok(j) => Response::Value(Some(l[j].bytes.clone())),
            Err(r) => r,
        },
        ListOp::Set(i, v) => match index(i, l.len()) {
            Ok(j) => {
                l[j] = admit(v);
                Response::Unit
            }
            Err(r) => r,
        },
        ListOp::Pop(i) => match index(i.unwrap_or(-1), l.len()) {
            Ok(j) => Response::Value(Some(l.remove(j).bytes)),
            Err(r) => r,
        },
        ListOp::Insert(i, v) => {
            if let Some(r) = too_many(l, 1) {
                return r;
            }
            // Python clamps the position of an insert.
            let n = l.len() as i64;
            let j = if i < 0 { (i + n).max(0) } else { i.min(n) };
            l.insert(j as usize, admit(v));
            Response::Unit
        }
        ListOp::Remove(v) => match l.iter().position(|x| x.bytes == v) {
            Some(j) => {
                l.remove(j);
                Response::Bool(true)
            }
            None => Response::Bool(false),
        },
        ListOp::Len => Response::Len(l.len() as u64),
        ListOp::Index(v) => match l.iter().position(|x| x.bytes == v) {
            Some(j) => Response::Len(j as u64),
            None => Response::Value(None),
        },
        ListOp::Count(v) => Response::Len(l.iter().filter(|x| x.bytes == v).count() as u64),
        ListOp::Clear => {
            l.clear();
            Response::Unit
        }
        ListOp::Snapshot => Response::Values(l.iter().map(|x| x.bytes.clone()).collect()),
    }
}
