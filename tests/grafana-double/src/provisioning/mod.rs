//! File provisioning, modelled on Grafana 12.0.2's
//! `pkg/services/provisioning/{datasources,dashboards}` (behaviour only; see
//! the README for sources).

pub mod dashboards;
pub mod datasources;

use crate::config::Env;

/// Grafana expands `$VAR`, `${VAR}` and `$$` (a literal `$`) in provisioning
/// YAML *values* (not keys). Hand-written because it is ten lines and must
/// match Go's `os.Expand` rules, which no crate here models exactly.
pub fn expand_env(s: &str, env: &Env) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '$' || i + 1 >= chars.len() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let next = chars[i + 1];
        if next == '$' {
            out.push('$');
            i += 2;
        } else if next == '{' {
            match chars[i + 2..].iter().position(|c| *c == '}') {
                Some(end) => {
                    let name: String = chars[i + 2..i + 2 + end].iter().collect();
                    out.push_str(env.get(&name).map(String::as_str).unwrap_or(""));
                    i += 3 + end;
                }
                None => {
                    out.push('$');
                    i += 1;
                }
            }
        } else if next.is_ascii_alphanumeric() || next == '_' {
            let mut j = i + 1;
            while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            let name: String = chars[i + 1..j].iter().collect();
            out.push_str(env.get(&name).map(String::as_str).unwrap_or(""));
            i = j;
        } else {
            out.push('$');
            i += 1;
        }
    }
    out
}

/// Applies [`expand_env`] to every string value of a YAML document.
pub fn expand_yaml(v: &mut serde_yaml::Value, env: &Env) {
    match v {
        serde_yaml::Value::String(s) => *s = expand_env(s, env),
        serde_yaml::Value::Sequence(seq) => seq.iter_mut().for_each(|x| expand_yaml(x, env)),
        serde_yaml::Value::Mapping(m) => m.iter_mut().for_each(|(_, x)| expand_yaml(x, env)),
        serde_yaml::Value::Tagged(t) => expand_yaml(&mut t.value, env),
        _ => {}
    }
}

/// Parses YAML into a value, formatting errors the way go-yaml words them
/// (`yaml: line N: <problem>`). The problem text itself comes from the Rust
/// YAML parser and may differ from go-yaml's (see README).
pub fn parse_yaml(text: &str) -> Result<serde_yaml::Value, String> {
    serde_yaml::from_str::<serde_yaml::Value>(text).map_err(|e| {
        let full = e.to_string();
        let msg = match full.find(" at line ") {
            Some(i) => full[..i].to_string(),
            None => full.clone(),
        };
        match e.location() {
            Some(loc) => format!("yaml: line {}: {}", loc.line(), msg),
            None => format!("yaml: {msg}"),
        }
    })
}

/// Type errors after a successful parse, in go-yaml's `unmarshal errors` wording.
pub fn unmarshal_error(e: impl std::fmt::Display) -> String {
    format!("yaml: unmarshal errors:\n  {e}")
}

/// Error text of a failed read, worded like Go's `os.ReadFile` errors.
pub fn go_read_error(path: &std::path::Path, e: &std::io::Error) -> String {
    if path.is_dir() {
        return format!("read {}: is a directory", path.display());
    }
    let why = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    };
    format!("open {}: {}", path.display(), why)
}

/// Lists `*.yaml` / `*.yml` entries of a directory in name order (Go's
/// `os.ReadDir` order). Directories with such names are included: reading
/// them fails later with "is a directory", as in Grafana.
pub fn yaml_files(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            n.ends_with(".yaml") || n.ends_with(".yml")
        })
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn env_expansion() {
        let env: Env = [("A".to_string(), "x".to_string())].into_iter().collect();
        assert_eq!(expand_env("$A-${A}-$$A-$B-${B}", &env), "x-x-$A--");
        assert_eq!(expand_env("100$", &env), "100$");
    }
    #[test]
    fn yaml_error_has_line() {
        let e = parse_yaml("a: b\nc: d: e\n").unwrap_err();
        assert!(e.starts_with("yaml: line 2: "), "{e}");
    }
}
