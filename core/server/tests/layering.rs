//! Layering: within every crate of the workspace, modules depend on each other only downward.
//!
//! The test reads each crate's `src/` from its root file (`lib.rs`, `main.rs`, `src/bin/*.rs`),
//! follows the `mod` declarations (files and inline blocks) and collects, per module, every
//! path that starts with `crate::`, `super::` or `self::`, in `use` trees and in code. A path
//! names the deepest module it reaches; an item re-exported by a `use` is followed to the module
//! that defines it, so `crate::Error` (a root re-export of `error::Error`) is an edge to
//! `error`, not to the root. A cycle among the modules of one crate fails the test, naming the
//! modules and one reference behind each edge. There is no list of allowed exceptions.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's absolute path inside its crate (`[]` is the crate root).
type ModPath = Vec<String>;

/// What one module of a crate says: the names it imports and the paths it references.
#[derive(Debug, Default)]
struct Module {
    /// Source file (for messages).
    file: PathBuf,
    /// Names this module brings into scope with `use`: name → absolute path (`*` for a glob).
    imports: BTreeMap<String, ModPath>,
    /// Absolute paths this module references (`crate::…`, `super::…`, `self::…`).
    refs: Vec<ModPath>,
}

/// Every module of one crate target, by path.
type Crate = BTreeMap<ModPath, Module>;

/// A lexical token: an identifier/keyword, `::`, or any other single character.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    PathSep,
    Punct(char),
}

/// Splits Rust source into tokens, dropping comments, string, char and byte literals and
/// lifetimes, which cannot name a module.
fn tokenize(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if (ch == 'r' || ch == 'b') && raw_string_start(&c, i).is_some() {
            let (hashes, body) = raw_string_start(&c, i).unwrap_or_default();
            i = body;
            loop {
                if i >= c.len() {
                    break;
                }
                if c[i] == '"' && (0..hashes).all(|k| c.get(i + 1 + k) == Some(&'#')) {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
        } else if ch == '"' || (ch == 'b' && c.get(i + 1) == Some(&'"')) {
            i += if ch == 'b' { 2 } else { 1 };
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else if ch == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if c.get(i + 1) == Some(&'\\') {
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            out.push(Tok::Ident(word.trim_start_matches("r#").to_owned()));
            if word == "r" && c.get(i) == Some(&'#') {
                // A raw identifier: r#type.
                i += 1;
                out.pop();
            }
        } else if ch.is_ascii_digit() {
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '.') {
                i += 1;
            }
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push(Tok::PathSep);
            i += 2;
        } else {
            out.push(Tok::Punct(ch));
            i += 1;
        }
    }
    out
}

/// If a raw (byte) string starts at `i` (`r"`, `r#"`, `br"`…), its `#` count and the index of
/// its first body character.
fn raw_string_start(c: &[char], i: usize) -> Option<(usize, usize)> {
    if i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_') {
        return None;
    }
    let mut j = i;
    if c[j] == 'b' {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while c.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (c.get(j) == Some(&'"')).then_some((hashes, j + 1))
}

/// Resolves a path's leading `crate`/`super`/`self` segments against the module `at`; any
/// other path is taken as relative to `at` (the caller checks that its head is a module or an
/// import there).
fn absolute(at: &[String], segs: &[String]) -> Option<ModPath> {
    let mut base: ModPath = at.to_vec();
    let mut rest = segs;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("super") => {
            while rest.first().map(String::as_str) == Some("super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        Some("self") => rest = &rest[1..],
        _ => {}
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// Parses one `use` tree starting at `toks[*i]`, with `prefix` already read, into
/// (name, path) pairs; advances `*i` past the tree.
fn use_tree(
    toks: &[Tok],
    i: &mut usize,
    prefix: Vec<String>,
    out: &mut Vec<(String, Vec<String>)>,
) {
    let mut path = prefix;
    loop {
        match toks.get(*i) {
            Some(Tok::Ident(w)) => {
                path.push(w.clone());
                *i += 1;
                if toks.get(*i) == Some(&Tok::PathSep) {
                    *i += 1;
                    continue;
                }
                let mut name = w.clone();
                if toks.get(*i) == Some(&Tok::Ident("as".into())) {
                    if let Some(Tok::Ident(alias)) = toks.get(*i + 1) {
                        name = alias.clone();
                    }
                    *i += 2;
                }
                if name == "self" {
                    path.pop();
                    name = path.last().cloned().unwrap_or_default();
                }
                out.push((name, path));
                return;
            }
            Some(Tok::Punct('*')) => {
                *i += 1;
                out.push(("*".into(), path));
                return;
            }
            Some(Tok::Punct('{')) => {
                *i += 1;
                loop {
                    match toks.get(*i) {
                        Some(Tok::Punct('}')) | None => {
                            *i += 1;
                            return;
                        }
                        Some(Tok::Punct(',')) => *i += 1,
                        _ => use_tree(toks, i, path.clone(), out),
                    }
                }
            }
            _ => return,
        }
    }
}

/// Where the crate's file-backed child module `name` of the module in `file` lives.
fn child_file(file: &Path, inline: &[String], name: &str) -> Option<PathBuf> {
    let stem = file.file_stem()?.to_str()?;
    let mut dir = file.parent()?.to_path_buf();
    if !matches!(stem, "lib" | "main" | "mod") || file.parent()?.ends_with("bin") && stem != "mod" {
        dir.push(stem);
    }
    for m in inline {
        dir.push(m);
    }
    [
        dir.join(format!("{name}.rs")),
        dir.join(name).join("mod.rs"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// Reads the module in `file` (at `path`) and, recursively, its children into `krate`.
fn read_module(krate: &mut Crate, file: &Path, path: ModPath) {
    let src = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let toks = tokenize(&src);
    // Stack of open modules: (path, inline segments below the file, brace depth at opening).
    let mut stack: Vec<(ModPath, Vec<String>, usize)> = vec![(path.clone(), Vec::new(), 0)];
    krate.entry(path).or_default().file = file.to_path_buf();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        let (cur, inline, _) = stack.last().cloned().expect("root");
        match &toks[i] {
            Tok::Punct('{') => {
                depth += 1;
                i += 1;
            }
            Tok::Punct('}') => {
                if stack.len() > 1 && stack.last().is_some_and(|s| s.2 == depth) {
                    stack.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            Tok::Ident(w) if w == "mod" => {
                let Some(Tok::Ident(name)) = toks.get(i + 1) else {
                    i += 1;
                    continue;
                };
                let mut child = cur.clone();
                child.push(name.clone());
                match toks.get(i + 2) {
                    Some(Tok::Punct(';')) => {
                        let f = child_file(file, &inline, name).unwrap_or_else(|| {
                            panic!("{}: no file for `mod {name};`", file.display())
                        });
                        read_module(krate, &f, child);
                        i += 3;
                    }
                    Some(Tok::Punct('{')) => {
                        depth += 1;
                        let mut inl = inline.clone();
                        inl.push(name.clone());
                        krate.entry(child.clone()).or_default().file = file.to_path_buf();
                        stack.push((child, inl, depth));
                        i += 3;
                    }
                    _ => i += 1,
                }
            }
            Tok::Ident(w) if w == "use" => {
                i += 1;
                let mut pairs = Vec::new();
                use_tree(&toks, &mut i, Vec::new(), &mut pairs);
                let m = krate.entry(cur.clone()).or_default();
                for (name, segs) in pairs {
                    m.refs.push(segs.clone());
                    m.imports.insert(name, segs);
                }
            }
            Tok::Ident(w) if toks.get(i + 1) == Some(&Tok::PathSep) => {
                let mut segs = vec![w.clone()];
                let mut j = i + 1;
                while toks.get(j) == Some(&Tok::PathSep) {
                    match toks.get(j + 1) {
                        Some(Tok::Ident(s)) => {
                            segs.push(s.clone());
                            j += 2;
                        }
                        _ => break,
                    }
                }
                krate.entry(cur.clone()).or_default().refs.push(segs);
                i = j;
            }
            _ => i += 1,
        }
    }
}

/// Makes every import and reference of `krate` absolute: `crate::`/`super::`/`self::` paths,
/// paths whose head is a child module, and paths whose head is an imported name. Anything else
/// (`std::…`, another crate, `Self::…`, an enum's variants) names no module of this crate and
/// is dropped.
fn resolve(krate: &mut Crate) {
    let modules: BTreeSet<ModPath> = krate.keys().cloned().collect();
    let rooted = |at: &ModPath, segs: &[String]| -> Option<ModPath> {
        let head = segs.first()?;
        if matches!(head.as_str(), "crate" | "super" | "self") {
            return absolute(at, segs);
        }
        let mut child = at.clone();
        child.push(head.clone());
        modules
            .contains(&child)
            .then(|| absolute(at, segs))
            .flatten()
    };
    for (at, m) in krate.iter_mut() {
        let raw = std::mem::take(&mut m.imports);
        for (name, segs) in &raw {
            if let Some(abs) = rooted(at, segs) {
                m.imports.insert(name.clone(), abs);
            }
        }
        let refs = std::mem::take(&mut m.refs);
        for segs in refs {
            let abs = rooted(at, &segs).or_else(|| {
                let via = m.imports.get(segs.first()?)?;
                let mut p = via.clone();
                p.extend(segs[1..].iter().cloned());
                Some(p)
            });
            m.refs.extend(abs);
        }
    }
}

/// The module a reference lands in: the deepest module on its path, following re-exports.
fn target(krate: &Crate, path: &[String]) -> ModPath {
    let mut path = path.to_vec();
    for _ in 0..16 {
        let mut k = path.len();
        while k > 0 && !krate.contains_key(&path[..k]) {
            k -= 1;
        }
        let module = &path[..k];
        // The segment after the module names an item there, or something it re-exports.
        let Some(item) = path.get(k) else {
            return module.to_vec();
        };
        match krate.get(module).and_then(|m| m.imports.get(item)) {
            Some(to) if to.as_slice() != path.as_slice() => {
                let mut next = to.clone();
                next.extend(path[k + 1..].iter().cloned());
                path = next;
            }
            _ => return module.to_vec(),
        }
    }
    path
}

/// Module dependency edges of a crate, lifted to siblings: a reference from `a::x::y` to
/// `b::z` is an edge `a -> b` between the children of their closest common ancestor (the
/// crate), because `a` as a whole then depends on `b`. A module naming its own ancestor's
/// items (`super::Failure`, `crate::Error`) or its own descendants (a parent wiring its
/// children) is no edge: a module owns its children, and layering is the order among
/// siblings. Edges: from → to → one example of a referenced path, and the module naming it.
fn edges(krate: &Crate) -> BTreeMap<ModPath, BTreeMap<ModPath, (ModPath, ModPath)>> {
    let mut out: BTreeMap<ModPath, BTreeMap<ModPath, (ModPath, ModPath)>> = BTreeMap::new();
    for (from, m) in krate {
        for r in &m.refs {
            let to = target(krate, r);
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == to.len() {
                continue;
            }
            let (a, b) = (from[..=common].to_vec(), to[..=common].to_vec());
            out.entry(a)
                .or_default()
                .entry(b)
                .or_insert_with(|| (r.clone(), from.clone()));
        }
    }
    out
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles<V>(g: &BTreeMap<ModPath, BTreeMap<ModPath, V>>) -> Vec<Vec<ModPath>> {
    struct T<'a, V> {
        g: &'a BTreeMap<ModPath, BTreeMap<ModPath, V>>,
        index: BTreeMap<&'a ModPath, usize>,
        low: BTreeMap<&'a ModPath, usize>,
        on: BTreeSet<&'a ModPath>,
        stack: Vec<&'a ModPath>,
        out: Vec<Vec<ModPath>>,
    }
    fn visit<'a, V>(t: &mut T<'a, V>, v: &'a ModPath) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        if let Some(next) = t.g.get(v) {
            for w in next.keys() {
                if !t.index.contains_key(w) {
                    visit(t, w);
                    let lw = t.low[w];
                    let lv = t.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if t.on.contains(w) {
                    let iw = t.index[w];
                    let lv = t.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        on: BTreeSet::new(),
        stack: Vec::new(),
        out: Vec::new(),
    };
    let keys: Vec<&ModPath> = g.keys().collect();
    for v in keys {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// Every crate target root in the workspace: `src/lib.rs`, `src/main.rs`, `src/bin/*.rs`.
fn crate_roots(workspace: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for group in [
        "core",
        "channels",
        "plugins",
        "plugins/fixtures",
        "examples",
    ] {
        let Ok(rd) = std::fs::read_dir(workspace.join(group)) else {
            continue;
        };
        for e in rd.flatten() {
            if e.path().join("Cargo.toml").is_file() {
                dirs.push(e.path());
            }
        }
    }
    dirs.sort();
    let mut roots = Vec::new();
    for d in dirs {
        for f in ["src/lib.rs", "src/main.rs"] {
            if d.join(f).is_file() {
                roots.push(d.join(f));
            }
        }
        if let Ok(rd) = std::fs::read_dir(d.join("src/bin")) {
            let mut bins: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "rs"))
                .collect();
            bins.sort();
            roots.extend(bins);
        }
    }
    roots
}

/// A module path as Rust writes it.
fn show(p: &[String]) -> String {
    if p.is_empty() {
        "crate".into()
    } else {
        format!("crate::{}", p.join("::"))
    }
}

#[test]
fn modules_depend_only_downward() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let roots = crate_roots(&workspace);
    assert!(
        roots.len() >= 10,
        "found only {} crate roots under {}",
        roots.len(),
        workspace.display()
    );
    let mut failures = Vec::new();
    let mut modules = 0;
    for root in roots {
        let mut krate = Crate::new();
        read_module(&mut krate, &root, Vec::new());
        resolve(&mut krate);
        modules += krate.len();
        let g = edges(&krate);
        for comp in cycles(&g) {
            let mut msg = format!("{}: cycle among", root.display());
            for m in &comp {
                msg += &format!(" {}", show(m));
            }
            for from in &comp {
                for (to, (via, by)) in g.get(from).into_iter().flatten() {
                    if comp.contains(to) {
                        msg += &format!(
                            "\n    {} -> {}: {} names {} ({})",
                            show(from),
                            show(to),
                            show(by),
                            show(via),
                            krate[by].file.display()
                        );
                    }
                }
            }
            failures.push(msg);
        }
    }
    assert!(modules > 100, "read only {modules} modules");
    assert!(
        failures.is_empty(),
        "module cycles:\n{}",
        failures.join("\n")
    );
}

/// The checker itself: a cycle through a re-export is found, a child using its parent's
/// items without the parent using it back is not a cycle.
#[test]
fn the_checker_finds_a_cycle_through_a_reexport() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\npub use b::Thing;\n").expect("write");
    std::fs::write(
        src.join("a.rs"),
        "use crate::Thing; // via the root's re-export\n",
    )
    .expect("write");
    std::fs::write(
        src.join("b.rs"),
        "pub struct Thing;\nfn f() { let s = \"crate::nothing\"; crate::a::g(); }\n#[cfg(test)]\nmod tests { use super::*; }\n",
    )
    .expect("write");
    let mut krate = Crate::new();
    read_module(&mut krate, &src.join("lib.rs"), Vec::new());
    resolve(&mut krate);
    let g = edges(&krate);
    let a = vec!["a".to_owned()];
    let b = vec!["b".to_owned()];
    assert_eq!(cycles(&g), vec![vec![a.clone(), b.clone()]]);
    std::fs::write(
        src.join("b.rs"),
        "pub struct Thing;\nfn f() { let s = \"crate::a::g()\"; }\n",
    )
    .expect("write");
    let mut krate = Crate::new();
    read_module(&mut krate, &src.join("lib.rs"), Vec::new());
    resolve(&mut krate);
    assert!(
        cycles(&edges(&krate)).is_empty(),
        "a string literal is no reference"
    );
    assert_eq!(
        edges(&krate)
            .get(&a)
            .map(|e| e.keys().cloned().collect::<Vec<_>>()),
        Some(vec![b])
    );
    // A reference from deep inside one subtree into another is an edge between the two
    // subtrees' heads, so the cycle a -> b::c -> a is one between a and b.
    std::fs::create_dir_all(src.join("b")).expect("mkdir");
    std::fs::write(src.join("b.rs"), "pub struct Thing;\nmod c;\n").expect("write");
    std::fs::write(
        src.join("b/c.rs"),
        "fn f() { super::super::a::g(); super::Thing; }\n",
    )
    .expect("write");
    let mut krate = Crate::new();
    read_module(&mut krate, &src.join("lib.rs"), Vec::new());
    resolve(&mut krate);
    assert_eq!(
        cycles(&edges(&krate)),
        vec![vec![vec!["a".to_owned()], vec!["b".to_owned()]]]
    );
}
