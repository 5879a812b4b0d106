//! The configuration reference of docs/configuration.md, generated from the configuration
//! structs' doc comments and defaults ([`crate::config::Config`]'s JSON schema), so that the
//! documentation cannot drift from the code: a test fails when the file is stale, and
//! `UPDATE_DOCS=1` rewrites it.
//!
//! Each table of the file (`[server]`, `[liveperson.manifest]`, `[channels.<instance>]`, ...) is
//! one block between `<!-- config-reference: NAME -->` and `<!-- /config-reference -->`; the
//! prose around the blocks is written by hand. A field's default is the value its
//! `#[serde(default)]` gives, unless its schema's `x-default` says in words what an unset key
//! means (a default computed at run time, or "required").

use serde_json::Value;

use crate::config::Config;

/// The marker that opens the block of table `NAME`: `<!-- config-reference: NAME -->`.
pub const BEGIN: &str = "<!-- config-reference: ";
/// The marker that closes a block.
pub const END: &str = "<!-- /config-reference -->";

/// One table of the reference: its dotted name (`liveperson.manifest`) and its markdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The dotted name, as in the file's `[name]` header.
    pub name: String,
    /// The markdown table of its keys: key, type, default, meaning.
    pub markdown: String,
}

/// Why a document could not be updated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// A table of the configuration has no block in the document.
    #[error("no `{BEGIN}{0} -->` block for the `[{0}]` table")]
    MissingBlock(String),
    /// A block names a table the configuration does not have.
    #[error("the block `{BEGIN}{0} -->` names no table of the configuration")]
    UnknownBlock(String),
    /// A block is not closed.
    #[error("the block `{BEGIN}{0} -->` has no `{END}`")]
    Unclosed(String),
}

/// The schema of the whole configuration, as it is read (deserialized).
pub fn schema() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator();
    generator.into_root_schema_for::<Config>().to_value()
}

/// Every table of the configuration, in the order of the file's sections.
pub fn tables() -> Vec<Table> {
    let root = schema();
    let mut out = Vec::new();
    walk(&root, &root, "", &mut out);
    out
}

/// `doc` with every reference block replaced by its generated table. Every table must have a
/// block, and every block a table.
pub fn update(doc: &str) -> Result<String, ReferenceError> {
    let tables = tables();
    let mut out = String::with_capacity(doc.len());
    let mut rest = doc;
    let mut seen = Vec::new();
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start + BEGIN.len()..];
        let Some(close) = after.find("-->") else {
            return Err(ReferenceError::Unclosed(after.chars().take(40).collect()));
        };
        let name = after[..close].trim().to_owned();
        let body = &after[close + "-->".len()..];
        let Some(end) = body.find(END) else {
            return Err(ReferenceError::Unclosed(name));
        };
        let Some(table) = tables.iter().find(|t| t.name == name) else {
            return Err(ReferenceError::UnknownBlock(name));
        };
        out.push_str(&rest[..start]);
        out.push_str(&format!("{BEGIN}{name} -->\n{}{END}", table.markdown));
        seen.push(name);
        rest = &body[end + END.len()..];
    }
    out.push_str(rest);
    if let Some(missing) = tables.iter().find(|t| !seen.contains(&t.name)) {
        return Err(ReferenceError::MissingBlock(missing.name.clone()));
    }
    Ok(out)
}

/// Adds the table of the object schema `object` (named `path`; the root has none) and then
/// those of its sub-tables.
fn walk(root: &Value, object: &Value, path: &str, out: &mut Vec<Table>) {
    let Some(properties) = object.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<&str> = object
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut rows = Vec::new();
    let mut nested = Vec::new();
    for (key, field) in properties {
        let child = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        let target = resolve(root, field);
        if target.get("properties").is_some() {
            nested.push((child, target));
            continue;
        }
        if let Some(entry) = target
            .get("additionalProperties")
            .map(|a| resolve(root, a))
            .filter(|a| a.get("properties").is_some())
        {
            nested.push((format!("{child}.<instance>"), entry));
            continue;
        }
        rows.push(row(root, key, field, required.contains(&key.as_str())));
    }
    if object.get("additionalProperties") == Some(&Value::Bool(true)) {
        rows.push(
            "| *any other key* | | | the channel kind's own keys, checked by the kind (see below) |"
                .to_owned(),
        );
    }
    if !path.is_empty() {
        let mut markdown =
            String::from("| key | type | default | meaning |\n| --- | --- | --- | --- |\n");
        for r in rows {
            markdown.push_str(&r);
            markdown.push('\n');
        }
        out.push(Table {
            name: path.to_owned(),
            markdown,
        });
    }
    for (child, target) in nested {
        walk(root, target, &child, out);
    }
}

/// One key's row: `| key | type | default | meaning |`.
fn row(root: &Value, key: &str, field: &Value, required: bool) -> String {
    let default = match (field.get("x-default"), field.get("default")) {
        (Some(Value::String(words)), _) => words.clone(),
        (_, Some(value)) => toml_value(value),
        _ if required => "required".to_owned(),
        _ => "none".to_owned(),
    };
    let mut meaning = text(field);
    let values = variants(root, field);
    if !values.is_empty() {
        let described: Vec<String> = values
            .iter()
            .filter(|(_, d)| !d.is_empty())
            .map(|(v, d)| format!("`{v}`: {d}"))
            .collect();
        if !described.is_empty() {
            meaning = format!("{meaning} {}", described.join("; "));
        }
    }
    format!(
        "| `{key}` | {} | {} | {} |",
        type_name(root, field),
        cell(&default),
        cell(meaning.trim())
    )
}

/// The schema `s` with `$ref`s followed and an `Option`'s `null` alternative dropped.
fn resolve<'a>(root: &'a Value, s: &'a Value) -> &'a Value {
    if let Some(reference) = s.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap_or_default();
        if let Some(def) = root.get("$defs").and_then(|d| d.get(name)) {
            return resolve(root, def);
        }
    }
    if let Some(any) = s.get("anyOf").and_then(Value::as_array) {
        let mut non_null = any
            .iter()
            .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"));
        if let (Some(only), None) = (non_null.next(), non_null.next()) {
            return resolve(root, only);
        }
    }
    s
}

/// The values of an enumeration and what each means (empty when `s` is none).
fn variants(root: &Value, s: &Value) -> Vec<(String, String)> {
    let s = resolve(root, s);
    if let Some(one_of) = s.get("oneOf").and_then(Value::as_array) {
        return one_of
            .iter()
            .filter_map(|v| {
                let value = v.get("const").and_then(Value::as_str)?;
                Some((value.to_owned(), text(v).trim_end_matches('.').to_owned()))
            })
            .collect();
    }
    if let Some(values) = s.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .filter_map(Value::as_str)
            .map(|v| (v.to_owned(), String::new()))
            .collect();
    }
    Vec::new()
}

/// The key's type in words: `string`, `integer`, `URL`, `list of string`, `"live" or
/// "simulator"`, ...
fn type_name(root: &Value, s: &Value) -> String {
    let s = resolve(root, s);
    let values = variants(root, s);
    if !values.is_empty() {
        let quoted: Vec<String> = values.iter().map(|(v, _)| format!("`\"{v}\"`")).collect();
        return quoted.join(" or ");
    }
    let kind = match s.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("any")
            .to_owned(),
        _ => "any".to_owned(),
    };
    match kind.as_str() {
        "string" if s.get("format").and_then(Value::as_str) == Some("uri") => "URL".to_owned(),
        "array" => match s.get("items") {
            Some(items) => format!("list of {}", type_name(root, items)),
            None => "list".to_owned(),
        },
        "object" => match s.get("additionalProperties") {
            Some(Value::Bool(true)) | None => "table".to_owned(),
            Some(values) => format!("table of {}", type_name(root, values)),
        },
        other => other.to_owned(),
    }
}

/// A default as it would be written in the file.
fn toml_value(value: &Value) -> String {
    match value {
        Value::Null => "none".to_owned(),
        Value::String(s) => format!("`\"{s}\"`"),
        Value::Array(items) if items.is_empty() => "`[]`".to_owned(),
        Value::Object(map) if map.is_empty() => "`{}`".to_owned(),
        Value::Array(items) => {
            let shown: Vec<String> = items.iter().map(|i| i.to_string()).collect();
            format!("`[{}]`", shown.join(", "))
        }
        other => format!("`{other}`"),
    }
}

/// A schema's title and description as one line of prose, rustdoc links made plain code.
fn text(s: &Value) -> String {
    let parts: Vec<&str> = ["title", "description"]
        .iter()
        .filter_map(|k| s.get(*k).and_then(Value::as_str))
        .collect();
    let joined = parts.join(" ");
    let words: Vec<&str> = joined.split_whitespace().collect();
    plain_links(&words.join(" "))
}

/// `` [`a::B`] `` becomes `` `a::B` `` (an intra-doc link means nothing on a web page);
/// `[text](url)` links stay.
fn plain_links(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find("[`") {
        let after = &rest[open + 1..];
        match after.find("`]") {
            Some(close) if !after[close + 2..].starts_with('(') => {
                out.push_str(&rest[..open]);
                out.push_str(&after[..close + 1]);
                rest = &after[close + 2..];
            }
            _ => {
                out.push_str(&rest[..open + 2]);
                rest = &rest[open + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Text made safe inside a markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intra_doc_links_become_code_and_web_links_stay() {
        assert_eq!(
            plain_links("see [`Self::mode`] and [`a`](https://x)"),
            "see `Self::mode` and [`a`](https://x)"
        );
    }

    #[test]
    fn every_table_has_keys_and_a_meaning_for_each() {
        let tables = tables();
        let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        for expected in [
            "server",
            "liveperson",
            "liveperson.manifest",
            "store",
            "channels.<instance>",
            "plugins",
            "telemetry",
        ] {
            assert!(names.contains(&expected), "{expected} not in {names:?}");
        }
        for table in &tables {
            for line in table.markdown.lines().skip(2) {
                let meaning = line.trim_end_matches('|').rsplit('|').next().unwrap_or("");
                assert!(!meaning.trim().is_empty(), "no meaning: {line}");
            }
        }
    }

    #[test]
    fn update_refuses_a_document_missing_a_table() {
        let doc = format!("{BEGIN}server -->\n{END}\n");
        assert!(matches!(update(&doc), Err(ReferenceError::MissingBlock(_))));
        let doc = format!("{BEGIN}nonsense -->\n{END}\n");
        assert!(matches!(update(&doc), Err(ReferenceError::UnknownBlock(_))));
    }
}
