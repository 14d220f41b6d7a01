//! A type that derives only `serde` as the values of a Manager dict and
//! list, written by a forked child and read back by the parent.

use std::collections::HashMap;

use ipc_core::codec::Serde;
use ipc_core::process::Process;
use ipc_manager::{DictProxy, Manager};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Kind {
    Leaf,
    Branch(Vec<String>),
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Node {
    name: String,
    kind: Kind,
    attrs: HashMap<String, i64>,
}

fn node(i: i64) -> Node {
    Node {
        name: format!("n{i}"),
        kind: if i % 2 == 0 {
            Kind::Leaf
        } else {
            Kind::Branch((0..i).map(|j| format!("c{j}")).collect())
        },
        attrs: HashMap::from([("depth".into(), i), ("w".into(), -i)]),
    }
}

#[test]
fn serde_values_in_a_manager_dict_and_list_across_processes(
) -> Result<(), Box<dyn std::error::Error>> {
    let mgr = Manager::start()?;
    let d = mgr.named("nodes").dict::<String, Serde<Node>>()?;
    let l = mgr.list::<Serde<Node>>()?;
    d.insert(&"root".into(), &Serde(node(0)))?;
    let name = mgr.name().to_owned();
    let l2 = l.clone();
    let mut child = Process::new(move || -> Result<(), String> {
        let m = Manager::connect(&name).map_err(|e| e.to_string())?;
        let d = m
            .get::<DictProxy<String, Serde<Node>>>("nodes")
            .map_err(|e| e.to_string())?;
        let root = d.get(&"root".into()).map_err(|e| e.to_string())?;
        if root.map(Serde::into_inner) != Some(node(0)) {
            return Err("child read a different root".into());
        }
        for i in 1..6 {
            d.insert(&format!("k{i}"), &Serde(node(i)))
                .map_err(|e| e.to_string())?;
            l2.push(&Serde(node(i * 10))).map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    child.start()?;
    child.join()?;
    assert_eq!(d.len()?, 6);
    for i in 1..6 {
        assert_eq!(
            d.get(&format!("k{i}"))?.map(Serde::into_inner),
            Some(node(i))
        );
    }
    let items: Vec<Node> = l.to_vec()?.into_iter().map(Serde::into_inner).collect();
    assert_eq!(items, (1..6).map(|i| node(i * 10)).collect::<Vec<_>>());
    Ok(())
}
