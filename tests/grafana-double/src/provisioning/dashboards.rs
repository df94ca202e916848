//! Dashboard provisioning: provider files in `<provisioning>/dashboards/*.y*ml`
//! and the `*.json` files under each provider's `options.path`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::{expand_yaml, go_read_error, parse_yaml, unmarshal_error, yaml_files};
use crate::config::Env;
use crate::logfmt::Logger;
use crate::state::{generate_uid, now_rfc3339, validate_uid, Dashboard, Provisioning, Store};

pub const LOGGER: &str = "provisioning.dashboard";

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase")]
struct ProvidersFile {
    #[serde(default)]
    #[allow(dead_code)]
    api_version: Option<i64>,
    #[serde(default)]
    providers: Option<Vec<ProviderDef>>,
}

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(rename_all = "camelCase", default)]
struct ProviderDef {
    name: String,
    #[serde(rename = "type")]
    ptype: String,
    org_id: i64,
    folder: String,
    folder_uid: String,
    disable_deletion: bool,
    update_interval_seconds: i64,
    allow_ui_updates: bool,
    options: serde_yaml::Mapping,
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub org_id: i64,
    pub folder: String,
    pub folder_uid: String,
    pub disable_deletion: bool,
    pub interval: Duration,
    pub allow_ui_updates: bool,
    pub path: PathBuf,
    pub folders_from_files_structure: bool,
}

/// One dashboard file's claim on a uid and a (title, folder) pair, for the duplicate validator.
#[derive(Debug, Clone)]
pub struct Usage {
    pub uid: String,
    pub title: String,
    pub folder: String,
}

const CREATE: &str = "Failed to create provisioner";

/// Reads and validates the provider files. An `Err` is fatal and already
/// carries Grafana's wrapping (`Failed to create provisioner: …`).
pub fn read_providers(provisioning: &Path, env: &Env, log: &Logger) -> Result<Vec<Provider>, String> {
    let dir = provisioning.join("dashboards");
    let files = match yaml_files(&dir) {
        Ok(f) => f,
        Err(e) => {
            log.error(
                LOGGER,
                "can't read dashboard provisioning files from directory",
                &[("path", &dir.display().to_string()), ("error", &go_read_error(&dir, &e))],
            );
            return Ok(Vec::new());
        }
    };
    let parse_err = |file: &Path, err: String| {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        format!("{CREATE}: Failed to read dashboards config: could not parse provisioning config file: {name} error: {err}")
    };
    let mut defs: Vec<ProviderDef> = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| parse_err(&file, go_read_error(&file, &e)))?;
        let mut doc = parse_yaml(&text).map_err(|e| parse_err(&file, e))?;
        if doc.is_null() {
            continue;
        }
        expand_yaml(&mut doc, env);
        let parsed: ProvidersFile = serde_yaml::from_value(doc).map_err(|e| parse_err(&file, unmarshal_error(e)))?;
        defs.extend(parsed.providers.unwrap_or_default());
    }

    let mut names = BTreeSet::new();
    for d in defs.iter_mut() {
        if d.org_id == 0 {
            d.org_id = 1;
        }
        if d.ptype.is_empty() {
            d.ptype = "file".into();
        }
        if d.update_interval_seconds <= 0 {
            d.update_interval_seconds = 10;
        }
        if !names.insert(d.name.clone()) {
            return Err(format!("{CREATE}: Failed to read dashboards config: dashboard name {:?} is not unique", d.name));
        }
        if d.org_id != 1 {
            return Err(format!("{CREATE}: Failed to read dashboards config: failed to provision dashboards with {:?} reader: organization not found", d.name));
        }
    }
    let init = "Failed to initialize file readers";
    let mut providers = Vec::new();
    for d in defs {
        if d.ptype != "file" {
            return Err(format!("{CREATE}: {init}: type {} is not supported", d.ptype));
        }
        let reader_err = |e: &str| format!("{CREATE}: {init}: failed to create file reader for config {}: {e}", d.name);
        let opt = |k: &str| d.options.get(serde_yaml::Value::String(k.into()));
        // `folder` is the deprecated alias of `path`
        let path = match opt("path").or_else(|| opt("folder")) {
            Some(serde_yaml::Value::String(s)) if !s.is_empty() => PathBuf::from(s),
            _ => return Err(reader_err("failed to load dashboards, path param is not a string")),
        };
        let ffs = matches!(opt("foldersFromFilesStructure"), Some(serde_yaml::Value::Bool(true)));
        if ffs && (!d.folder.is_empty() || !d.folder_uid.is_empty()) {
            return Err(reader_err("'folder' and 'folderUID' should be empty using 'foldersFromFilesStructure' option"));
        }
        providers.push(Provider {
            name: d.name,
            org_id: d.org_id,
            folder: d.folder,
            folder_uid: d.folder_uid,
            disable_deletion: d.disable_deletion,
            interval: Duration::from_secs(d.update_interval_seconds as u64),
            allow_ui_updates: d.allow_ui_updates,
            path,
            folders_from_files_structure: ffs,
        });
    }
    Ok(providers)
}

fn walk_json(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        // fs::metadata follows symlinks, as Grafana's walker does
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        if meta.is_dir() {
            if !name.starts_with('.') {
                walk_json(&path, out)?;
            }
        } else if name.ends_with(".json") {
            out.push(path);
        }
    }
    Ok(())
}

fn checksum(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Outcome of reading one dashboard file.
enum Loaded {
    Ok { model: Value, title: String, checksum: String },
    Failed(String),
}

fn load_file(path: &Path) -> Loaded {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return Loaded::Failed(go_read_error(path, &e)),
    };
    let sum = checksum(&bytes);
    let text = String::from_utf8_lossy(&bytes);
    if text.trim().is_empty() {
        return Loaded::Failed("EOF".into());
    }
    let model: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return Loaded::Failed(e.to_string()),
    };
    // Grafana builds the dashboard from the top-level object: a file in the
    // API shape {"dashboard": {...}} (or an array) has no top-level title.
    let title = model.get("title").and_then(Value::as_str).unwrap_or("").to_string();
    if title.is_empty() {
        return Loaded::Failed("Dashboard title cannot be empty".into());
    }
    Loaded::Ok { model, title, checksum: sum }
}

/// One pass of one provider's file reader. Returns the uid/title usage of
/// the files it read, or `Err` when its path cannot be read.
pub fn provider_pass(p: &Provider, store: &mut Store, log: &Logger) -> Result<Vec<Usage>, ()> {
    let ctx: [(&str, &str); 2] = [("type", "file"), ("name", &p.name)];
    let resolved = match std::fs::canonicalize(&p.path) {
        Ok(r) => r,
        Err(e) => {
            let err = format!("lstat {}: {}", p.path.display(), go_read_error(&p.path, &e).rsplit(": ").next().unwrap_or(""));
            log.log(LOGGER, &ctx, "error", "Failed to read content of symlinked path", &[("path", &p.path.display().to_string()), ("error", &err)]);
            log.log(LOGGER, &ctx, "error", "Cannot read directory", &[("error", &err)]);
            log.log(LOGGER, &ctx, "error", "failed to search for dashboards", &[("error", &err)]);
            return Err(());
        }
    };
    let mut files = Vec::new();
    if let Err(e) = walk_json(&resolved, &mut files) {
        let err = go_read_error(&resolved, &e);
        log.log(LOGGER, &ctx, "error", "Cannot read directory", &[("error", &err)]);
        log.log(LOGGER, &ctx, "error", "failed to search for dashboards", &[("error", &err)]);
        return Err(());
    }
    files.sort();
    let can_write = !store.provider_blocked.get(&p.name).copied().unwrap_or(false);
    let mut usage = Vec::new();
    let found: BTreeSet<String> = files.iter().map(|f| f.display().to_string()).collect();

    for file in &files {
        let file_s = file.display().to_string();
        let (mut model, title, sum) = match load_file(file) {
            Loaded::Ok { model, title, checksum } => (model, title, checksum),
            Loaded::Failed(err) => {
                log.log(LOGGER, &ctx, "error", "failed to load dashboard from ", &[("file", &file_s), ("error", &err)]);
                continue;
            }
        };
        let external_id = file.strip_prefix(&resolved).map(|r| r.display().to_string()).unwrap_or_default();
        let folder_uid = match folder_for(p, file, &resolved, store) {
            Ok(f) => f,
            Err(err) => {
                log.log(LOGGER, &ctx, "error", "failed to save dashboard", &[("file", &file_s), ("error", &err)]);
                continue;
            }
        };
        let file_uid = model.get("uid").and_then(Value::as_str).unwrap_or("").to_string();
        usage.push(Usage { uid: file_uid.clone(), title: title.clone(), folder: folder_uid.clone().unwrap_or_default() });
        if !can_write {
            continue;
        }
        let previous = store
            .dashboards
            .values()
            .find(|d| d.provisioning.as_ref().is_some_and(|pr| pr.provider == p.name && pr.file == file_s))
            .map(|d| (d.uid.clone(), d.provisioning.as_ref().unwrap().checksum.clone()));
        if let Some((_, prev_sum)) = &previous {
            if *prev_sum == sum {
                continue; // unchanged since the last save
            }
        }
        if let Err(err) = check_saveable(&file_uid, &title, &model) {
            log.log(LOGGER, &ctx, "error", "failed to save dashboard", &[("file", &file_s), ("error", &err)]);
            continue;
        }
        let uid = if !file_uid.is_empty() { file_uid } else { previous.map(|(u, _)| u).unwrap_or_else(generate_uid) };
        // a non-zero id in the file is discarded before saving
        if let Some(o) = model.as_object_mut() {
            o.remove("id");
        }
        let prov = Provisioning { provider: p.name.clone(), file: file_s.clone(), external_id, allow_ui_updates: p.allow_ui_updates, checksum: sum };
        save_overwrite(store, uid, title, folder_uid, model, prov);
    }

    // Files gone from disk: delete their dashboards, or with disableDeletion only un-provision them.
    let gone: Vec<String> = store
        .dashboards
        .values()
        .filter(|d| d.provisioning.as_ref().is_some_and(|pr| pr.provider == p.name && !found.contains(&pr.file)))
        .map(|d| d.uid.clone())
        .collect();
    for uid in gone {
        if !can_write {
            break;
        }
        let file = store.dashboards[&uid].provisioning.as_ref().map(|pr| pr.file.clone()).unwrap_or_default();
        if p.disable_deletion {
            log.log(LOGGER, &ctx, "info", "unprovisioning dashboard, missing file", &[("file", &file), ("uid", &uid)]);
            if let Some(d) = store.dashboards.get_mut(&uid) {
                d.provisioning = None;
            }
        } else {
            log.log(LOGGER, &ctx, "info", "deleting provisioned dashboard, missing file", &[("file", &file), ("uid", &uid)]);
            store.dashboards.remove(&uid);
        }
    }
    Ok(usage)
}

fn folder_for(p: &Provider, file: &Path, resolved: &Path, store: &mut Store) -> Result<Option<String>, String> {
    if p.folders_from_files_structure {
        let parent = file.parent().unwrap_or(resolved);
        if parent == resolved {
            return Ok(None);
        }
        let title = parent.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        return store.get_or_create_folder(&title, None).map(Some);
    }
    if p.folder.is_empty() {
        return Ok(None);
    }
    store.get_or_create_folder(&p.folder, Some(&p.folder_uid)).map(Some)
}

fn check_saveable(uid: &str, title: &str, model: &Value) -> Result<(), String> {
    if !uid.is_empty() {
        validate_uid(uid)?;
    }
    if title.chars().count() > 5000 {
        return Err("Dashboard title cannot contain more than 5 000 characters".into());
    }
    if let Some(tags) = model.get("tags").and_then(Value::as_array) {
        if tags.iter().filter_map(Value::as_str).any(|t| t.chars().count() > 50) {
            return Err("dashboard tag too long, max 50 characters".into());
        }
    }
    Ok(())
}

/// Save with `overwrite = true`, like provisioning always does: the same
/// uid overwrites that dashboard; otherwise the same title in the same
/// folder takes over the existing dashboard's id and uid.
fn save_overwrite(store: &mut Store, uid: String, title: String, folder_uid: Option<String>, model: Value, prov: Provisioning) {
    let now = now_rfc3339();
    let tags = model.get("tags").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect()).unwrap_or_default();
    let target_uid = if store.dashboards.contains_key(&uid) {
        uid
    } else if let Some(same_title) =
        store.dashboards.values().find(|d| d.org_id == 1 && d.folder_uid == folder_uid && d.title.to_lowercase() == title.to_lowercase())
    {
        same_title.uid.clone()
    } else {
        uid
    };
    match store.dashboards.get_mut(&target_uid) {
        Some(d) => {
            d.title = title;
            d.tags = tags;
            d.folder_uid = folder_uid;
            d.model = model;
            d.version += 1;
            d.updated = now;
            d.provisioning = Some(prov);
        }
        None => {
            let id = store.next_dashboard_id();
            store.dashboards.insert(
                target_uid.clone(),
                Dashboard {
                    id,
                    uid: target_uid,
                    org_id: 1,
                    title,
                    tags,
                    folder_uid,
                    model,
                    version: 1,
                    created: now.clone(),
                    updated: now,
                    provisioning: Some(prov),
                },
            );
        }
    }
}

/// The duplicate validator: warns about a uid or a (title, folder) used by
/// more than one file and takes write permission away from the providers
/// involved until the duplicates are gone.
pub fn validate_duplicates(usage: &HashMap<String, Vec<Usage>>, store: &mut Store, log: &Logger) {
    let mut by_uid: BTreeMap<&str, (usize, BTreeSet<&str>)> = BTreeMap::new();
    let mut by_title: BTreeMap<(String, &str), (usize, BTreeSet<&str>)> = BTreeMap::new();
    for (provider, list) in usage {
        for u in list {
            if !u.uid.is_empty() {
                let e = by_uid.entry(&u.uid).or_default();
                e.0 += 1;
                e.1.insert(provider);
            }
            let e = by_title.entry((u.title.to_lowercase(), &u.folder)).or_default();
            e.0 += 1;
            e.1.insert(provider);
        }
    }
    let mut blocked: BTreeSet<String> = BTreeSet::new();
    for (uid, (times, providers)) in &by_uid {
        if *times > 1 {
            let list = format!("[{}]", providers.iter().copied().collect::<Vec<_>>().join(" "));
            log.warn(LOGGER, "the same UID is used more than once", &[("orgId", "1"), ("uid", uid), ("times", &times.to_string()), ("providers", &list)]);
            blocked.extend(providers.iter().map(|s| s.to_string()));
        }
    }
    for ((title, folder), (times, providers)) in &by_title {
        if *times > 1 {
            let folder_id = store.folder_by_uid(folder).map(|f| f.id).unwrap_or(0).to_string();
            let list = format!("[{}]", providers.iter().copied().collect::<Vec<_>>().join(" "));
            log.warn(
                LOGGER,
                "dashboard title is not unique in folder",
                &[("orgId", "1"), ("title", title), ("folderID", &folder_id), ("times", &times.to_string()), ("providers", &list)],
            );
            blocked.extend(providers.iter().map(|s| s.to_string()));
        }
    }
    for name in usage.keys() {
        let is_blocked = blocked.contains(name);
        if is_blocked {
            log.warn(LOGGER, "dashboards provisioning provider has no database write permissions because of duplicates", &[("provider", name), ("orgId", "1")]);
        }
        store.provider_blocked.insert(name.clone(), is_blocked);
    }
}
