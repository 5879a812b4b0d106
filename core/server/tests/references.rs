//! Every reference in the repository leads somewhere inside it (issue 23 item 1): a section
//! reference (`docs/protocol/liveperson.md §7.4.1`, `docs/architecture.md "Data flow"`) names
//! a document of the repository that has that heading, no comment or page points at files
//! outside it (the team's notes the code was first written from), and every relative link of
//! a Markdown page resolves.
//!
//! The rule for `§`: a reference names its document on the same line, before the section
//! (`docs/protocol/liveperson.md §7.4, §7.5`); inside `docs/protocol/` a bare `§` is the page's
//! own. Sections of other standards keep their own name (`RFC 6749 §3.2`).

use std::path::{Path, PathBuf};

use regex::Regex;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The files whose text is checked: sources, manifests, scripts and pages, outside build
/// output.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "target" | ".git" | "node_modules") {
                files(&path, out);
            }
        } else if [".rs", ".md", ".toml", ".sh"]
            .iter()
            .any(|ext| name.ends_with(ext))
            || name == "test"
            || name == "run"
        {
            out.push(path);
        }
    }
}

/// The headings of a Markdown page, without their `#`s.
fn headings(page: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(page).ok()?;
    Some(
        text.lines()
            .filter(|l| l.starts_with('#'))
            .map(|l| l.trim_start_matches('#').trim().to_owned())
            .collect(),
    )
}

/// Whether `heading` is section `number` (`7.4` is `7.4 Notification envelope…`, not
/// `7.4.1 …`).
fn is_section(heading: &str, number: &str) -> bool {
    heading
        .strip_prefix(number)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '.']))
}

/// Whether `page` has section `number`: a heading, or an item of a section's numbered list
/// (12.13 is item 13 of section 12's list).
fn has_section(page: &Path, number: &str) -> bool {
    if headings(page)
        .unwrap_or_default()
        .iter()
        .any(|h| is_section(h, number))
    {
        return true;
    }
    let Some((section, item)) = number.rsplit_once('.') else {
        return false;
    };
    let text = std::fs::read_to_string(page).unwrap_or_default();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with('#') {
            inside = is_section(line.trim_start_matches('#').trim(), section);
        } else if inside && line.starts_with(&format!("{item}. ")) {
            return true;
        }
    }
    false
}

/// The page a reference names: a path from the repository's root (`docs/…`), else one
/// relative to the referring file, else a page of `docs/` by its name (`channel-spec.md`).
fn resolve(named: &str, from: &Path) -> Option<PathBuf> {
    let root = root();
    let named = named.trim_start_matches("./");
    [
        root.join(named),
        from.parent().unwrap().join(named),
        root.join("docs").join(named),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .and_then(|p| p.canonicalize().ok())
}

#[test]
fn every_reference_leads_to_a_heading_inside_the_repository() {
    let outside = Regex::new(
        r"(^|[^/\w])spec/(liveperson|channels|plugin-abi)\.md|DESIGN\.md|/work/shared|\.\./shared/",
    )
    .unwrap();
    let section = Regex::new(r"§ ?(\d+(?:\.\d+)*)").unwrap();
    let page = Regex::new(r"([\w./-]+\.md)").unwrap();
    let title = Regex::new(r#"([\w./-]+\.md)`?,? "([^"]+)""#).unwrap();
    let other_standard = Regex::new(r"RFC ?\d+ $").unwrap();
    let root = root().canonicalize().unwrap();
    let mut all = Vec::new();
    files(&root, &mut all);
    let mut problems = Vec::new();
    for file in &all {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let rel = file.strip_prefix(&root).unwrap().display().to_string();
        let own_page = rel.starts_with("docs/protocol/");
        for (n, line) in text.lines().enumerate() {
            let at = format!("{rel}:{}", n + 1);
            if outside.is_match(line) && !rel.ends_with("references.rs") {
                problems.push(format!("{at}: points outside the repository: {line}"));
            }
            for m in section.captures_iter(line) {
                let whole = m.get(0).unwrap();
                let before = &line[..whole.start()];
                if other_standard.is_match(before) {
                    continue;
                }
                let named = page.find_iter(before).last().map(|p| p.as_str());
                let target = match named {
                    Some(named) => resolve(named, file),
                    None if own_page => Some(file.clone()),
                    None => {
                        problems.push(format!("{at}: `{}` names no page", whole.as_str()));
                        continue;
                    }
                };
                let Some(target) = target else {
                    problems.push(format!("{at}: no page {}", named.unwrap_or("?")));
                    continue;
                };
                let number = &m[1];
                if !has_section(&target, number) {
                    problems.push(format!(
                        "{at}: {} has no section {number}",
                        target.strip_prefix(&root).unwrap_or(&target).display()
                    ));
                }
            }
            for m in title.captures_iter(line) {
                let Some(target) = resolve(&m[1], file) else {
                    continue;
                };
                let wanted = &m[2];
                if !headings(&target)
                    .unwrap_or_default()
                    .iter()
                    .any(|h| h.contains(wanted))
                {
                    problems.push(format!("{at}: {} has no heading \"{wanted}\"", &m[1]));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} dangling references:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn every_relative_link_of_a_page_resolves() {
    let link = Regex::new(r"\]\(([^)\s]+)\)").unwrap();
    let root = root().canonicalize().unwrap();
    let mut all = Vec::new();
    files(&root, &mut all);
    let mut problems = Vec::new();
    for file in all
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "md"))
    {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for m in link.captures_iter(line) {
                let target = &m[1];
                if target.contains("://")
                    || target.starts_with('#')
                    || target.starts_with("mailto:")
                {
                    continue;
                }
                let path = target.split('#').next().unwrap();
                if !file.parent().unwrap().join(path).exists() {
                    problems.push(format!(
                        "{}:{}: {target}",
                        file.strip_prefix(&root).unwrap().display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "links to nothing:\n{}",
        problems.join("\n")
    );
}
