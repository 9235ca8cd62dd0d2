//! The JSON schema README documents is the one `wiretop --json` prints:
//! every field of a snapshot with every optional field present appears in
//! README's schema block, and every field named there is printed.

use std::collections::BTreeSet;

use serde_json::Value;
use wirehook_shared::inspect::{PeerRef, Snapshot};
use wiretop::source::{rated, DemoSource};

/// A demo snapshot with every optional field filled in.
fn full_snapshot() -> Snapshot {
    let mut src = DemoSource::new(1.0);
    let mut prev = None;
    rated(&mut src, &mut prev);
    let mut s = rated(&mut src, &mut prev); // rates and interval
    let web = s
        .namespaces
        .iter_mut()
        .find(|n| n.container.is_some())
        .expect("a container");
    web.container
        .as_mut()
        .unwrap()
        .sharers
        .push("sidecar".into());
    let l = web.links.last_mut().unwrap();
    l.master = Some("br0".into());
    l.parent = Some("eth0".into());
    l.parent_netns_inode = Some(1);
    l.peer = Some(PeerRef {
        netns_inode: None,
        ifindex: 3,
        ifname: Some("veth0".into()),
    });
    s
}

/// The key set of every object in a JSON value.
fn objects(v: &Value, out: &mut BTreeSet<BTreeSet<String>>) {
    match v {
        Value::Object(m) => {
            out.insert(m.keys().cloned().collect());
            m.values().for_each(|x| objects(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| objects(x, out)),
        _ => {}
    }
}

/// An object README documents: its fields, and which of them are
/// optional (`name?`).
#[derive(Debug, Default, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Group {
    all: BTreeSet<String>,
    optional: BTreeSet<String>,
}

/// The objects (`{ ... }`) of README's schema block and their fields: a
/// field is a name at the start of a line or after `{` or `,`, followed
/// (after an optional `?`) by `:`, `,` or `}` (`{ pid, comm }`, `mac?,`,
/// `rate?: Rate`); values (`kind: veth|..`) and type names
/// (`Counters = {`) are not fields.
fn readme_groups() -> Vec<Group> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let start = readme
        .find("**JSON.**")
        .expect("README has a **JSON.** part");
    let block = &readme[start..];
    let open = block.find("```").expect("schema block") + 3;
    let close = open + block[open..].find("```").expect("schema block end");
    let mut done = Vec::new();
    let mut stack: Vec<Group> = Vec::new();
    for line in block[open..close].lines() {
        // Comments after `#` are prose.
        let line = line.split(" # ").next().unwrap();
        let c: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < c.len() {
            if c[i] == '{' {
                stack.push(Group::default());
                i += 1;
                continue;
            }
            if c[i] == '}' {
                done.push(stack.pop().expect("balanced braces in README's schema"));
                i += 1;
                continue;
            }
            if !(c[i].is_ascii_alphabetic() || c[i] == '_') {
                i += 1;
                continue;
            }
            let s = i;
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let before = c[..s].iter().rev().find(|ch| **ch != ' ');
            let mut j = i;
            let optional = j < c.len() && c[j] == '?';
            if optional {
                j += 1;
            }
            while j < c.len() && c[j] == ' ' {
                j += 1;
            }
            let after = c.get(j);
            if matches!(before, None | Some('{') | Some(','))
                && matches!(after, Some(':') | Some(',') | Some('}'))
            {
                let name: String = c[s..i].iter().collect();
                let g = stack.last_mut().expect("fields inside braces");
                if optional {
                    g.optional.insert(name.clone());
                }
                g.all.insert(name);
            }
        }
    }
    assert!(stack.is_empty(), "unbalanced braces in README's schema");
    done
}

#[test]
fn readme_schema_matches_the_output() {
    let groups = readme_groups();
    assert!(
        groups.len() >= 10,
        "parsed too little of README: {groups:?}"
    );
    let mut printed = BTreeSet::new();
    objects(
        &serde_json::to_value(full_snapshot()).unwrap(),
        &mut printed,
    );
    // And with the optional fields left out.
    let mut src = DemoSource::new(1.0);
    objects(
        &serde_json::to_value(rated(&mut src, &mut None)).unwrap(),
        &mut printed,
    );
    let fits = |g: &Group, keys: &BTreeSet<String>| {
        keys.is_subset(&g.all) && g.all.difference(keys).all(|k| g.optional.contains(k))
    };
    for keys in &printed {
        assert!(
            groups.iter().any(|g| fits(g, keys)),
            "an object with fields {keys:?} is printed, README documents none like it: {groups:#?}"
        );
    }
    for g in &groups {
        assert!(
            printed.iter().any(|keys| fits(g, keys)),
            "README documents an object {g:?} that is never printed like that; printed: {printed:#?}"
        );
    }
}

#[test]
fn absent_optional_fields_are_left_out() {
    // README: "absent optional fields are left out" (not null). The one
    // documented null is a peer's netns_inode (not visible).
    let mut src = DemoSource::new(1.0);
    let s = rated(&mut src, &mut None); // first sample: no rates
    let text = serde_json::to_string(&s).unwrap();
    let nulls = text.matches(":null").count();
    let peer_nulls = text.matches("\"netns_inode\":null").count();
    assert_eq!(nulls, peer_nulls, "{text}");
    assert!(!text.contains("\"rate\""), "no rates in a first sample");
    assert!(!text.contains("\"interval\""));
    // And it reads back.
    let back: Snapshot = serde_json::from_str(&text).unwrap();
    assert_eq!(back.namespaces.len(), s.namespaces.len());
}
