//! Datasource provisioning (`<provisioning>/datasources/*.y*ml`).
//! Every error returned here is fatal: the caller wraps it as
//! `Datasource provisioning error: <err>` and the process stops.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::{expand_yaml, go_read_error, parse_yaml, unmarshal_error, yaml_files};
use crate::config::Env;
use crate::logfmt::Logger;
use crate::state::{generate_uid, Datasource, Store};

const LOGGER: &str = "provisioning.datasources";

pub const ERR_TOO_MANY_DEFAULT: &str = "datasource.yaml config is invalid. Only one datasource per organization can be marked as default";

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase")]
struct FileV1 {
    #[serde(default)]
    datasources: Option<Vec<DsDef>>,
    #[serde(default)]
    delete_datasources: Option<Vec<DeleteDef>>,
    #[serde(default)]
    #[allow(dead_code)]
    prune: Option<bool>,
}

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(rename_all = "camelCase", default)]
struct DsDef {
    org_id: i64,
    version: i64,
    name: String,
    #[serde(rename = "type")]
    ds_type: String,
    access: String,
    url: String,
    password: String,
    user: String,
    database: String,
    basic_auth: bool,
    basic_auth_user: String,
    basic_auth_password: String,
    with_credentials: bool,
    is_default: bool,
    json_data: Option<serde_yaml::Mapping>,
    secure_json_data: Option<BTreeMap<String, String>>,
    editable: bool,
    uid: String,
}

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(rename_all = "camelCase", default)]
struct DeleteDef {
    org_id: i64,
    name: String,
}

/// snake_case keys of the deprecated v0 schema and their v1 names.
const V0_KEYS: &[(&str, &str)] = &[
    ("org_id", "orgId"),
    ("basic_auth", "basicAuth"),
    ("basic_auth_user", "basicAuthUser"),
    ("basic_auth_password", "basicAuthPassword"),
    ("with_credentials", "withCredentials"),
    ("is_default", "isDefault"),
    ("json_data", "jsonData"),
    ("secure_json_data", "secureJsonData"),
    ("delete_datasources", "deleteDatasources"),
];
const V0_PLAIN: &[&str] = &["name", "type", "access", "url", "password", "user", "database", "version", "editable", "uid", "datasources"];

/// Rewrites a v0 document into v1 keys; v1-only (camelCase) keys are dropped,
/// as the v0 Go struct would not see them.
fn v0_to_v1(v: &serde_yaml::Value) -> serde_yaml::Value {
    match v {
        serde_yaml::Value::Mapping(m) => {
            let mut out = serde_yaml::Mapping::new();
            for (k, val) in m {
                let Some(key) = k.as_str() else { continue };
                let new_key = if let Some((_, v1)) = V0_KEYS.iter().find(|(v0, _)| *v0 == key) {
                    *v1
                } else if V0_PLAIN.contains(&key) {
                    key
                } else {
                    continue;
                };
                // json_data / secure_json_data contents are user keys: keep them as they are.
                let converted = if new_key == "jsonData" || new_key == "secureJsonData" { val.clone() } else { v0_to_v1(val) };
                out.insert(serde_yaml::Value::String(new_key.to_string()), converted);
            }
            serde_yaml::Value::Mapping(out)
        }
        serde_yaml::Value::Sequence(s) => serde_yaml::Value::Sequence(s.iter().map(v0_to_v1).collect()),
        other => other.clone(),
    }
}

fn yaml_to_json(v: &serde_yaml::Value) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Reads all files, validates them, then applies deletes and upserts.
pub fn provision(provisioning: &Path, env: &Env, store: &mut Store, log: &Logger) -> Result<(), String> {
    let dir = provisioning.join("datasources");
    let files = match yaml_files(&dir) {
        Ok(f) => f,
        Err(e) => {
            log.error(
                LOGGER,
                "can't read datasource provisioning files from directory",
                &[
                    ("path", &dir.display().to_string()),
                    ("error", &go_read_error(&dir, &e).replace(&format!("read {}: ", dir.display()), &format!("open {}: ", dir.display()))),
                ],
            );
            return Ok(());
        }
    };

    let mut configs: Vec<FileV1> = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|e| go_read_error(&path, &e))?;
        let mut doc = parse_yaml(&text)?;
        if doc.is_null() {
            continue;
        }
        let api_version = doc.get("apiVersion").and_then(|v| v.as_i64()).unwrap_or(0);
        if api_version < 1 {
            log.warn(LOGGER, "[Deprecated] the datasource provisioning config is outdated. please upgrade", &[("filename", &path.display().to_string())]);
            doc = v0_to_v1(&doc);
        }
        expand_yaml(&mut doc, env);
        let file: FileV1 = serde_yaml::from_value(doc).map_err(unmarshal_error)?;
        configs.push(file);
    }

    // validateDefaultUniqueness: counted per org across all files together.
    let mut defaults: BTreeMap<i64, usize> = BTreeMap::new();
    for cfg in &mut configs {
        for ds in cfg.datasources.iter_mut().flatten() {
            if ds.org_id == 0 {
                ds.org_id = 1;
            }
            if ds.is_default {
                let n = defaults.entry(ds.org_id).or_default();
                *n += 1;
                if *n > 1 {
                    return Err(ERR_TOO_MANY_DEFAULT.into());
                }
            }
        }
        for d in cfg.delete_datasources.iter_mut().flatten() {
            if d.org_id == 0 {
                d.org_id = 1;
            }
        }
    }
    // validateAccessAndOrgs: only the main org (1) exists in the double.
    for cfg in &mut configs {
        for ds in cfg.datasources.iter_mut().flatten() {
            if ds.access.is_empty() {
                ds.access = "proxy".into();
            } else if ds.access != "proxy" && ds.access != "direct" {
                log.warn(LOGGER, "invalid access value, will use 'proxy' instead", &[("value", &ds.access)]);
                ds.access = "proxy".into();
            }
            if ds.org_id != 1 {
                return Err(format!("failed to provision {:?} data source: organization not found", ds.name));
            }
        }
    }

    for cfg in configs {
        for d in cfg.delete_datasources.unwrap_or_default() {
            if d.name.is_empty() {
                return Err("unique identifier and org id are needed to be able to get or delete a datasource".into());
            }
            let before = store.datasources.len();
            store.datasources.retain(|x| !(x.name == d.name && x.org_id == d.org_id));
            if store.datasources.len() != before {
                log.info(LOGGER, "deleted datasource based on configuration", &[("name", &d.name)]);
            }
        }
        for ds in cfg.datasources.unwrap_or_default() {
            upsert(store, ds, log)?;
        }
    }
    Ok(())
}

fn upsert(store: &mut Store, ds: DsDef, log: &Logger) -> Result<(), String> {
    if ds.name.is_empty() {
        return Err("unique identifier and org id are needed to be able to get or delete a datasource".into());
    }
    let mut secure = ds.secure_json_data.clone().unwrap_or_default();
    if !ds.password.is_empty() {
        secure.entry("password".into()).or_insert(ds.password.clone());
    }
    if !ds.basic_auth_password.is_empty() {
        secure.entry("basicAuthPassword".into()).or_insert(ds.basic_auth_password.clone());
    }
    let json_data = ds.json_data.as_ref().map(|m| yaml_to_json(&serde_yaml::Value::Mapping(m.clone()))).unwrap_or_else(|| Value::Object(Default::default()));

    let existing = store.datasources.iter().position(|x| x.name == ds.name && x.org_id == ds.org_id);
    let (id, uid, version) = match existing {
        Some(i) => {
            let old = &store.datasources[i];
            if ds.version != 0 && ds.version < old.version {
                log.log(LOGGER, &[], "debug", "ignoring old version of datasource", &[("name", &ds.name)]);
                return Ok(());
            }
            if !ds.uid.is_empty() && ds.uid != old.uid {
                // Grafana updates the row found by name with the new uid, re-reads
                // it by (id, new uid), finds nothing and fails.
                return Err("data source not found".into());
            }
            (old.id, old.uid.clone(), old.version + 1)
        }
        None => {
            let uid = if ds.uid.is_empty() { generate_uid() } else { ds.uid.clone() };
            if store.datasources.iter().any(|x| x.uid == uid && x.org_id == ds.org_id) {
                return Err("data source with the same uid already exists".into());
            }
            log.info(LOGGER, "inserting datasource from configuration", &[("name", &ds.name), ("uid", &uid)]);
            (store.next_datasource_id(), uid, 1)
        }
    };
    if ds.is_default {
        // the SQL store's updateIsDefaultFlag: a default steals the flag in its org
        for other in store.datasources.iter_mut().filter(|x| x.org_id == ds.org_id) {
            other.is_default = false;
        }
    }
    let row = Datasource {
        id,
        uid,
        org_id: ds.org_id,
        name: ds.name.clone(),
        ds_type: ds.ds_type.clone(),
        access: ds.access.clone(),
        url: ds.url.clone(),
        user: ds.user.clone(),
        database: ds.database.clone(),
        basic_auth: ds.basic_auth,
        basic_auth_user: ds.basic_auth_user.clone(),
        with_credentials: ds.with_credentials,
        is_default: ds.is_default,
        json_data,
        secure_json_data: secure,
        read_only: !ds.editable,
        version,
    };
    match existing {
        Some(i) => {
            log.log(LOGGER, &[], "debug", "updating datasource from configuration", &[("name", &ds.name), ("uid", &row.uid)]);
            store.datasources[i] = row;
        }
        None => store.datasources.push(row),
    }
    Ok(())
}
