//! One concept per folder, checked: inside each crate (every crate under `crates/` and the root
//! package), no two files import each other in a circle, and no source file is over 600 lines
//! outside its `#[cfg(test)]` module. A failure names the cycle or the file.
//!
//! Imports are read from the text: `use crate::…`, `use super::…`, `use self::…`, `use child::…`
//! (a module of the file itself) and `crate::…`/`super::…`/`self::…` paths in code. Each path
//! ends at the file that holds its deepest module (`foo.rs` or `foo/mod.rs`), so a parent using
//! its child's items is an edge parent → child and a child using its parent's is child → parent;
//! a name that file only re-exports (`pub use engine::LlamaEngine` in lib.rs) leads on to the
//! file it comes from, while the re-export itself is an edge of the re-exporting file.

#[path = "support/tree.rs"]
mod tree;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use tree::rust_files;

/// The most lines a source file may have, not counting its `#[cfg(test)]` module.
const MAX_LINES: usize = 600;

#[test]
fn no_file_imports_itself_in_a_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cycles = Vec::new();
    let mut checked = 0;
    for package in packages(root) {
        for crate_root in crate_roots(&package) {
            let files = module_tree(&crate_root);
            checked += files.len();
            let graph = import_graph(&files);
            for cycle in find_cycles(&graph) {
                let names: Vec<String> = cycle.iter().map(|p| relative(root, p)).collect();
                cycles.push(names.join(" -> "));
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} files found: is the layout read right?"
    );
    assert!(
        cycles.is_empty(),
        "files that import each other in a circle (move what both need into a file of its own):\n  {}",
        cycles.join("\n  ")
    );
}

#[test]
fn no_source_file_is_over_600_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut long = Vec::new();
    let mut dirs = vec![root.join("src")];
    dirs.extend(packages(root).into_iter().skip(1).map(|p| p.join("src")));
    for dir in dirs {
        for path in rust_files(&dir) {
            let text = std::fs::read_to_string(&path).unwrap();
            let n = lines_outside_tests(&text);
            if n > MAX_LINES {
                long.push(format!("{} ({n} lines)", relative(root, &path)));
            }
        }
    }
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines outside their tests (split them by concept):\n  {}",
        long.join("\n  ")
    );
}

/// The root package, then every crate under `crates/`.
fn packages(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut crates: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("src").is_dir())
        .collect();
    crates.sort();
    out.extend(crates);
    out
}

/// The crate roots of a package: its library, its binary and `src/bin/*.rs`.
fn crate_roots(package: &Path) -> Vec<PathBuf> {
    let src = package.join("src");
    let mut out: Vec<PathBuf> = ["lib.rs", "main.rs"]
        .iter()
        .map(|f| src.join(f))
        .filter(|p| p.is_file())
        .collect();
    if src.join("bin").is_dir() {
        let mut bins = rust_files(&src.join("bin"));
        bins.retain(|p| p.parent() == Some(&src.join("bin")));
        bins.sort();
        out.extend(bins);
    }
    out
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// Lines of `text` outside a top-level `#[cfg(test)] mod … { … }` (rustfmt closes it with a
/// `}` in the first column).
fn lines_outside_tests(text: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let mut count = 0;
    let mut i = 0;
    while i < lines.len() {
        let next = lines.get(i + 1).copied().unwrap_or("");
        if lines[i] == "#[cfg(test)]" && next.starts_with("mod ") && next.ends_with('{') {
            i += 2;
            while i < lines.len() && lines[i] != "}" {
                i += 1;
            }
            i += 1;
            continue;
        }
        count += 1;
        i += 1;
    }
    count
}

/// A source file and the tokens of its code (comments and literals blanked).
struct SourceFile {
    path: PathBuf,
    tokens: Vec<String>,
}

/// The files of the crate rooted at `root`, by module path, following `mod name;` declarations.
fn module_tree(root: &Path) -> BTreeMap<Vec<String>, SourceFile> {
    let mut files = BTreeMap::new();
    let mut queue = VecDeque::from([(root.to_path_buf(), Vec::<String>::new(), true)]);
    while let Some((path, module, owns_dir)) = queue.pop_front() {
        let text = std::fs::read_to_string(&path).unwrap();
        let tokens = tokens(&blank_comments_and_literals(&text));
        // The folder a file's child modules live in: its own for lib.rs, main.rs and mod.rs,
        // else one named like the file.
        let dir = if owns_dir {
            path.parent().unwrap().to_path_buf()
        } else {
            path.with_extension("")
        };
        for (inline, child) in declared_modules(&tokens) {
            let mut sub = dir.clone();
            sub.extend(inline.iter());
            let (file, owns) = if sub.join(format!("{child}.rs")).is_file() {
                (sub.join(format!("{child}.rs")), false)
            } else {
                (sub.join(&child).join("mod.rs"), true)
            };
            if file.is_file() {
                let mut m = module.clone();
                m.extend(inline);
                m.push(child);
                queue.push_back((file, m, owns));
            }
        }
        files.insert(module, SourceFile { path, tokens });
    }
    files
}

/// `mod name;` declarations of a file: the inline modules they sit in, and the name.
fn declared_modules(tokens: &[String]) -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    walk(tokens, |i, inline| {
        if tokens[i] == "mod" && is_ident(tok(tokens, i + 1)) && tok(tokens, i + 2) == ";" {
            out.push((inline.to_vec(), tokens[i + 1].clone()));
        }
        i + 1
    });
    out
}

/// Calls `visit(index, inline modules around it)` over the tokens; `visit` returns where to go
/// on (so a `use` statement can be skipped whole).
fn walk(tokens: &[String], mut visit: impl FnMut(usize, &[String]) -> usize) {
    let mut braces: Vec<Option<String>> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let inline: Vec<String> = braces.iter().flatten().cloned().collect();
        let next = visit(i, &inline);
        for j in i..next.max(i + 1) {
            match tokens[j].as_str() {
                "{" => {
                    let inline_mod = j >= 2 && tokens[j - 2] == "mod" && is_ident(&tokens[j - 1]);
                    braces.push(inline_mod.then(|| tokens[j - 1].clone()));
                }
                "}" => {
                    braces.pop();
                }
                _ => {}
            }
        }
        i = next.max(i + 1);
    }
}

fn tok(tokens: &[String], i: usize) -> &str {
    tokens.get(i).map_or("", String::as_str)
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// The file-level import graph of one crate.
fn import_graph(files: &BTreeMap<Vec<String>, SourceFile>) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    // What each file's top-level `use` names stand for, so that `crate::Name` re-exported by
    // lib.rs (or a mod.rs) leads to the file that defines `Name`.
    let mut aliases: BTreeMap<PathBuf, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (module, file) in files {
        let names = aliases.entry(file.path.clone()).or_default();
        let t = &file.tokens;
        walk(t, |i, inline| {
            if t[i] != "use" {
                return i + 1;
            }
            let mut paths = Vec::new();
            let end = use_tree(t, i + 1, &mut Vec::new(), &mut paths);
            if inline.is_empty() {
                for (path, name) in paths {
                    if let Some(absolute) = absolute(files, module, &path, true) {
                        names.insert(name, absolute);
                    }
                }
            }
            end
        });
    }
    let mut graph = BTreeMap::new();
    for (module, file) in files {
        let mut targets = BTreeSet::new();
        let t = &file.tokens;
        walk(t, |i, inline| {
            let mut here = module.clone();
            here.extend(inline.iter().cloned());
            if t[i] == "use" {
                let mut paths = Vec::new();
                let end = use_tree(t, i + 1, &mut Vec::new(), &mut paths);
                for (p, _) in paths {
                    if let Some(a) = absolute(files, &here, &p, true) {
                        targets.insert(file_of(files, &aliases, a));
                    }
                }
                return end;
            }
            let starts_path = matches!(t[i].as_str(), "crate" | "super" | "self")
                && tok(t, i + 1) == "::"
                && (i == 0 || t[i - 1] != "::");
            if starts_path {
                let mut p = vec![t[i].clone()];
                let mut j = i + 1;
                while tok(t, j) == "::" && is_ident(tok(t, j + 1)) {
                    p.push(t[j + 1].clone());
                    j += 2;
                }
                if let Some(a) = absolute(files, &here, &p, false) {
                    targets.insert(file_of(files, &aliases, a));
                }
                return j;
            }
            i + 1
        });
        targets.remove(&file.path);
        graph.insert(file.path.clone(), targets);
    }
    graph
}

/// Reads a use tree from `i` (after `use`) into full paths with the name each brings in;
/// returns the index after it.
fn use_tree(
    t: &[String],
    mut i: usize,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, String)>,
) -> usize {
    let depth = prefix.len();
    loop {
        match tok(t, i) {
            "::" => i += 1,
            "{" => {
                i += 1;
                while tok(t, i) != "}" && i < t.len() {
                    i = use_tree(t, i, prefix, out);
                    if tok(t, i) == "," {
                        i += 1;
                    }
                }
                i += 1;
                break;
            }
            "*" => {
                out.push((prefix.clone(), "*".to_string()));
                i += 1;
                break;
            }
            s if is_ident(s) => {
                prefix.push(s.to_string());
                i += 1;
                let mut name = s.to_string();
                if tok(t, i) == "as" {
                    name = tok(t, i + 1).to_string();
                    i += 2;
                }
                if tok(t, i) != "::" {
                    if name == "self" {
                        name = prefix[prefix.len().saturating_sub(2)].clone();
                    }
                    out.push((prefix.clone(), name));
                    break;
                }
            }
            _ => break,
        }
    }
    prefix.truncate(depth);
    if tok(t, i) == ";" { i + 1 } else { i }
}

/// The path from the crate root that `path`, written in module `here`, names; `None` for
/// another crate's. A path not starting with `crate`, `super` or `self` is this crate's only in
/// a `use` naming a child module.
fn absolute(
    files: &BTreeMap<Vec<String>, SourceFile>,
    here: &[String],
    path: &[String],
    in_use: bool,
) -> Option<Vec<String>> {
    let mut module: Vec<String> = here.to_vec();
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => {
            module.clear();
            rest = &path[1..];
        }
        Some("super" | "self") => {
            while let Some(s) = rest.first().map(String::as_str) {
                match s {
                    "super" => {
                        module.pop()?;
                    }
                    "self" => {}
                    _ => break,
                }
                rest = &rest[1..];
            }
        }
        Some(first) if in_use => {
            let mut child = here.to_vec();
            child.push(first.to_string());
            if !files.keys().any(|k| k.starts_with(&child)) {
                return None;
            }
        }
        _ => return None,
    }
    module.extend(rest.iter().filter(|s| *s != "self").cloned());
    Some(module)
}

/// The file that holds what an absolute path names: the deepest module of the path that is a
/// file of its own, or, when that file only re-exports the name, the file it comes from.
fn file_of(
    files: &BTreeMap<Vec<String>, SourceFile>,
    aliases: &BTreeMap<PathBuf, BTreeMap<String, Vec<String>>>,
    mut path: Vec<String>,
) -> PathBuf {
    for _ in 0..16 {
        let n = (0..=path.len())
            .rev()
            .find(|&n| files.contains_key(&path[..n]))
            .expect("the crate root is a file");
        let file = &files[&path[..n]].path;
        match path.get(n).and_then(|name| aliases[file].get(name)) {
            Some(target) if *target != path[..=n] => {
                let mut next = target.clone();
                next.extend(path[n + 1..].iter().cloned());
                path = next;
            }
            _ => return file.clone(),
        }
    }
    files[&path[..0]].path.clone()
}

/// One cycle through each group of files that reach each other, shortest first.
fn find_cycles(graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Vec<PathBuf>> {
    let mut seen = BTreeSet::new();
    let mut cycles = Vec::new();
    for start in graph.keys() {
        if seen.contains(start) {
            continue;
        }
        // Breadth first from `start` back to itself: the shortest cycle through it.
        let mut came_from: BTreeMap<&PathBuf, &PathBuf> = BTreeMap::new();
        let mut queue = VecDeque::from([start]);
        let mut closing = None;
        while let Some(node) = queue.pop_front() {
            for next in graph.get(node).into_iter().flatten() {
                if next == start {
                    closing = Some(node);
                    break;
                }
                if !came_from.contains_key(next) {
                    came_from.insert(next, node);
                    queue.push_back(next);
                }
            }
            if closing.is_some() {
                break;
            }
        }
        if let Some(mut node) = closing {
            let mut cycle = vec![start.clone()];
            while node != start {
                cycle.push(node.clone());
                node = came_from[node];
            }
            cycle.reverse();
            cycle.insert(0, start.clone());
            cycle.pop();
            cycle.push(start.clone());
            seen.extend(cycle.iter().cloned());
            cycles.push(cycle);
        }
    }
    cycles
}

/// `text` with comments, strings and character literals blanked out, so their words are not
/// read as paths.
fn blank_comments_and_literals(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    while i < c.len() {
        let at = |k: usize| c.get(k).copied().unwrap_or('\0');
        if c[i] == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if c[i] == 'r'
            && (at(i + 1) == '"' || (at(i + 1) == '#' && at(i + 2) != '['))
            && (i == 0 || !(c[i - 1].is_alphanumeric() || c[i - 1] == '_'))
        {
            // A raw string: r"…" or r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while at(j) == '#' {
                hashes += 1;
                j += 1;
            }
            if at(j) != '"' {
                out.push(c[i]);
                i += 1;
                continue;
            }
            j += 1;
            while j < c.len() && !(c[j] == '"' && (1..=hashes).all(|h| at(j + h) == '#')) {
                blank(&mut out, c[j]);
                j += 1;
            }
            out.push_str("\"\"");
            i = j + 1 + hashes;
        } else if c[i] == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                blank(&mut out, at(i));
                i += 1;
            }
            out.push_str("\"\"");
            i += 1;
        } else if c[i] == '\'' && (at(i + 1) == '\\' || at(i + 2) == '\'') {
            // A character literal (a lifetime has no closing quote).
            i += 1;
            while i < c.len() && c[i] != '\'' {
                if c[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            out.push_str("' '");
            i += 1;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Identifiers, `::` and single punctuation characters.
fn tokens(code: &str) -> Vec<String> {
    let c: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        if c[i].is_alphanumeric() || c[i] == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(c[start..i].iter().collect());
        } else if c[i] == ':' && c.get(i + 1) == Some(&':') {
            out.push("::".to_string());
            i += 2;
        } else {
            if !c[i].is_whitespace() {
                out.push(c[i].to_string());
            }
            i += 1;
        }
    }
    out
}

/// The check itself, on a crate made for it: `use crate::…` and `super::…` in code close a
/// circle; a name re-exported by lib.rs leads to the file that defines it, not to lib.rs.
#[test]
fn the_check_finds_a_circle_and_follows_re_exports() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    let write = |path: &str, text: &str| std::fs::write(src.join(path), text).unwrap();
    write("lib.rs", "mod a;\nmod b;\npub use a::A;\n");
    write("a/mod.rs", "mod inner;\npub struct A;\n");
    write("a/inner.rs", "fn f() -> super::A { super::A }\n");
    write("b.rs", "use crate::A;\npub struct B(A);\n");
    let cycles = |files| find_cycles(&import_graph(&files));
    assert!(cycles(module_tree(&src.join("lib.rs"))).is_empty());

    write(
        "a/inner.rs",
        "fn f() -> crate::b::B { todo!() } // crate::a\n",
    );
    write("a/mod.rs", "mod inner;\npub struct A;\nuse inner::*;\n");
    let found = cycles(module_tree(&src.join("lib.rs")));
    let names: Vec<Vec<String>> = found
        .iter()
        .map(|c| c.iter().map(|p| relative(&src, p)).collect())
        .collect();
    assert_eq!(names, [["a/inner.rs", "b.rs", "a/mod.rs", "a/inner.rs"]]);
}
