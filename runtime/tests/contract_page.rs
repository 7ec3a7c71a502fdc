//! docs/contract.md's reference tables (config keys, manifest keys, grants)
//! are generated from the typed config and manifest, so they cannot drift:
//! this test fails when a table differs from what the code says, and
//! `VIGIL_BLESS=1 cargo test -p vigil-runtime --test contract_page`
//! rewrites them.

use schemars::schema_for;
use serde_json::Value;
use vigil_runtime::config::Config;
use vigil_runtime::plugin::manifest::{GRANTABLE, Manifest};

const PAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/contract.md");

#[test]
fn generated_tables_match_the_code() {
    let page = std::fs::read_to_string(PAGE).unwrap();
    let mut want = page.clone();
    for (name, text) in [("config", config_tables()), ("manifest", manifest_table()), ("grants", grants_table())] {
        want = replace_block(&want, name, &text);
    }
    if want == page {
        return;
    }
    if std::env::var_os("VIGIL_BLESS").is_some() {
        std::fs::write(PAGE, &want).unwrap();
        return;
    }
    let diff: Vec<String> = want
        .lines()
        .zip(page.lines())
        .enumerate()
        .filter(|(_, (w, p))| w != p)
        .take(5)
        .map(|(i, (w, p))| format!("line {}:\n  page: {p}\n  code: {w}", i + 1))
        .collect();
    panic!(
        "docs/contract.md's generated tables differ from the code (run with VIGIL_BLESS=1 to rewrite them):\n{}",
        diff.join("\n")
    );
}

/// Replaces what lies between `<!-- generated: NAME -->` and
/// `<!-- end: NAME -->`.
fn replace_block(page: &str, name: &str, text: &str) -> String {
    let (open, close) = (format!("<!-- generated: {name} -->\n"), format!("<!-- end: {name} -->"));
    let a = page.find(&open).unwrap_or_else(|| panic!("docs/contract.md has no {open:?}")) + open.len();
    let b = page[a..].find(&close).unwrap_or_else(|| panic!("docs/contract.md has no {close:?}")) + a;
    format!("{}{text}{}", &page[..a], &page[b..])
}

/// One table per `[table]` of the config file, every key with its default.
fn config_tables() -> String {
    let schema = schema_for!(Config);
    let root = schema.as_value();
    let mut out = String::new();
    for (table, prop) in props(root) {
        let def = resolve(root, prop);
        // The field's doc names its table ("`[scoring]`: ..."); the heading does here.
        let about = one_line(description(prop));
        let about = about.strip_prefix(&format!("`[{table}]`: ")).unwrap_or(&about);
        out += &format!("### `[{table}]`\n\n{}\n\n", capitalized(about));
        out += "| key | default | meaning |\n|---|---|---|\n";
        for (key, p) in props(def) {
            out += &format!("| `{key}` | {} | {} |\n", literal(p.get("default")), one_line(description(p)));
        }
        out += "\n";
    }
    out
}

/// The manifest's keys, nested tables flattened to `table.key`.
fn manifest_table() -> String {
    let schema = schema_for!(Manifest);
    let root = schema.as_value();
    let required: Vec<&str> =
        root["required"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let mut out = String::from("| key | default | meaning |\n|---|---|---|\n");
    for (key, p) in props(root) {
        let def = resolve(root, p);
        let nested = props(def);
        if nested.is_empty() || key == "config" {
            let default = if required.contains(&key.as_str()) { "required".into() } else { literal(p.get("default")) };
            out += &format!("| `{key}` | {default} | {} |\n", one_line(description(p)));
            continue;
        }
        for (sub, sp) in nested {
            let default = match sp.get("default").or_else(|| p.get("default").and_then(|d| d.get(&sub))) {
                // A limit not set is the config's.
                None | Some(Value::Null) => "the config's".into(),
                d => literal(d),
            };
            out += &format!("| `{key}.{sub}` | {default} | {} |\n", one_line(description(sp)));
        }
    }
    out
}

fn grants_table() -> String {
    let mut out = String::from("| grant | the plugin sees |\n|---|---|\n");
    for (name, meaning) in GRANTABLE {
        out += &format!("| `{name}` | {meaning} |\n");
    }
    out
}

/// A schema's properties, in order.
fn props(schema: &Value) -> Vec<(String, &Value)> {
    schema["properties"].as_object().map(|m| m.iter().map(|(k, v)| (k.clone(), v)).collect()).unwrap_or_default()
}

/// Follows a `$ref` to its definition.
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
        Some(name) => &root["$defs"][name],
        None => schema,
    }
}

fn description(schema: &Value) -> &str {
    schema.get("description").and_then(Value::as_str).unwrap_or("")
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next().map_or(String::new(), |f| f.to_uppercase().chain(c).collect())
}

/// Doc comments fit a table cell: one line, no pipes.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").replace('|', "\\|")
}

/// A default as it would be written in TOML.
fn literal(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "not set".into(),
        Some(Value::String(s)) if s.is_empty() => "`\"\"`".into(),
        Some(v) => format!("`{}`", toml_value(v)),
    }
}

fn toml_value(v: &Value) -> String {
    match v {
        Value::Array(a) => format!("[{}]", a.iter().map(toml_value).collect::<Vec<_>>().join(", ")),
        Value::Object(o) if o.is_empty() => "{}".into(),
        Value::Object(o) => {
            format!(
                "{{ {} }}",
                o.iter().map(|(k, v)| format!("{k} = {}", toml_value(v))).collect::<Vec<_>>().join(", ")
            )
        }
        other => other.to_string(),
    }
}
