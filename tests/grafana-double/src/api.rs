//! The HTTP API, with Grafana 12.0.2's response shapes (see README for sources).

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::prom::{self, PromQuery};
use crate::state::{slugify, Dashboard, Datasource, Folder};
use crate::{AppState, COMMIT, GRAFANA_VERSION};

type St = State<Arc<AppState>>;

pub fn router(state: Arc<AppState>) -> Router {
    let authed = Router::new()
        .route("/api/user", get(user))
        .route("/api/org", get(org))
        .route("/api/search", get(search))
        .route("/api/dashboards/uid/{uid}", get(dashboard_by_uid))
        .route("/api/folders", get(folders))
        .route("/api/folders/{uid}", get(folder_by_uid))
        .route("/api/datasources", get(datasources))
        .route("/api/datasources/uid/{uid}", get(datasource_by_uid))
        .route("/api/datasources/name/{name}", get(datasource_by_name))
        .route("/api/datasources/uid/{uid}/health", get(datasource_health))
        .route("/api/ds/query", post(ds_query))
        .route("/api/frontend/settings", get(frontend_settings))
        .route("/api/admin/provisioning/dashboards/reload", post(reload_dashboards))
        .fallback(not_found)
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new().route("/api/health", get(health)).route("/healthz", get(|| async { "Ok" })).merge(authed).with_state(state)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"message": message, "traceID": ""}))).into_response()
}

/// errutil-style errors carry messageId and statusCode.
fn error_id(status: StatusCode, message: &str, id: &str) -> Response {
    (status, Json(json!({"message": message, "messageId": id, "statusCode": status.as_u16(), "traceID": ""}))).into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not found")
}

#[derive(Clone, Copy, PartialEq)]
enum Role {
    Admin,
    Viewer,
}

async fn auth(State(st): St, mut req: Request, next: Next) -> Response {
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    let role = match header {
        None => {
            if st.cfg.anonymous_enabled {
                if st.cfg.anonymous_org_role.eq_ignore_ascii_case("admin") {
                    Role::Admin
                } else {
                    Role::Viewer
                }
            } else {
                return (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"extra": null, "message": "Unauthorized", "messageId": "auth.unauthorized", "statusCode": 401, "traceID": ""})),
                )
                    .into_response();
            }
        }
        Some(h) => {
            let (scheme, rest) = h.split_once(' ').unwrap_or((h.as_str(), ""));
            if scheme.eq_ignore_ascii_case("basic") {
                let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok().and_then(|b| String::from_utf8(b).ok());
                let ok = decoded
                    .as_deref()
                    .and_then(|d| d.split_once(':'))
                    .is_some_and(|(u, p)| (u == st.cfg.admin_user || u == "admin@localhost") && p == st.cfg.admin_password);
                if !ok {
                    st.log.log(
                        "context",
                        &[],
                        "info",
                        "Request Completed",
                        &[("method", req.method().as_str()), ("path", req.uri().path()), ("status", "401")],
                    );
                    return (
                        StatusCode::UNAUTHORIZED,
                        Json(json!({"message": "Invalid username or password", "messageId": "password-auth.failed", "statusCode": 401})),
                    )
                        .into_response();
                }
                Role::Admin
            } else {
                // The double has no service accounts or API keys.
                return (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"extra": null, "message": "Invalid API key", "messageId": "api-key.invalid", "statusCode": 401, "traceID": ""})),
                )
                    .into_response();
            }
        }
    };
    req.extensions_mut().insert(role);
    next.run(req).await
}

async fn health() -> Response {
    let body = json!({"commit": COMMIT, "database": "ok", "version": GRAFANA_VERSION});
    let text = serde_json::to_string_pretty(&body).unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json; charset=UTF-8")], text).into_response()
}

async fn user(State(st): St) -> Response {
    Json(json!({
        "id": 1, "uid": "admin-user", "email": "admin@localhost", "name": "", "login": st.cfg.admin_user,
        "theme": "", "orgId": 1, "isGrafanaAdmin": true, "isDisabled": false, "isExternal": false,
        "isExternallySynced": false, "isGrafanaAdminExternallySynced": false, "authLabels": [],
        "updatedAt": "2025-01-01T00:00:00Z", "createdAt": "2025-01-01T00:00:00Z",
        "avatarUrl": "/avatar/46d229b033af06a191ff2267bca9ae56", "isProvisioned": false
    }))
    .into_response()
}

async fn org() -> Response {
    Json(json!({"id": 1, "name": "Main Org.", "address": {"address1": "", "address2": "", "city": "", "zipCode": "", "state": "", "country": ""}}))
        .into_response()
}

fn query_pairs(raw: &Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()).into_owned().collect()
}

/// Values of a repeatable parameter; comma-separated values are split too.
fn multi(pairs: &[(String, String)], key: &str) -> Vec<String> {
    pairs.iter().filter(|(k, _)| k == key).flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_string()).collect::<Vec<_>>()).filter(|s| !s.is_empty()).collect()
}

fn folder_hit(f: &Folder) -> Value {
    let slug = slugify(&f.title);
    json!({
        "id": f.id, "uid": f.uid, "orgId": f.org_id, "title": f.title,
        "uri": format!("db/{slug}"), "url": format!("/dashboards/f/{}/{}", f.uid, slug),
        "slug": "", "type": "dash-folder", "tags": [], "isStarred": false, "sortMeta": 0, "isDeleted": false
    })
}

fn dashboard_hit(d: &Dashboard, folder: Option<&Folder>) -> Value {
    let slug = slugify(&d.title);
    let mut m = Map::new();
    m.insert("id".into(), json!(d.id));
    m.insert("uid".into(), json!(d.uid));
    m.insert("orgId".into(), json!(d.org_id));
    m.insert("title".into(), json!(d.title));
    m.insert("uri".into(), json!(format!("db/{slug}")));
    m.insert("url".into(), json!(format!("/d/{}/{}", d.uid, slug)));
    m.insert("slug".into(), json!(""));
    m.insert("type".into(), json!("dash-db"));
    m.insert("tags".into(), json!(d.tags));
    m.insert("isStarred".into(), json!(false));
    if let Some(f) = folder {
        m.insert("folderId".into(), json!(f.id));
        m.insert("folderUid".into(), json!(f.uid));
        m.insert("folderTitle".into(), json!(f.title));
        m.insert("folderUrl".into(), json!(format!("/dashboards/f/{}/{}", f.uid, slugify(&f.title))));
    }
    m.insert("sortMeta".into(), json!(0));
    m.insert("isDeleted".into(), json!(false));
    Value::Object(m)
}

async fn search(State(st): St, RawQuery(raw): RawQuery) -> Response {
    let pairs = query_pairs(&raw);
    let first = |k: &str| pairs.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.clone());
    let query = first("query").unwrap_or_default().to_lowercase();
    let typ = first("type").unwrap_or_default();
    let tags = multi(&pairs, "tag");
    let folder_uids = multi(&pairs, "folderUIDs");
    let folder_ids: Vec<i64> = multi(&pairs, "folderIds").iter().filter_map(|s| s.parse().ok()).collect();
    let dash_uids = multi(&pairs, "dashboardUIDs");
    let dash_ids: Vec<i64> = multi(&pairs, "dashboardIds").iter().filter_map(|s| s.parse().ok()).collect();
    let starred = first("starred").is_some_and(|v| v == "true");
    let limit = first("limit").and_then(|v| v.parse::<usize>().ok()).filter(|l| *l > 0).unwrap_or(1000).min(5000);
    let page = first("page").and_then(|v| v.parse::<usize>().ok()).filter(|p| *p > 0).unwrap_or(1);

    let store = st.store.read().unwrap();
    // Filters on the containing folder: "general"/"" and id 0 mean the root.
    let in_folder = |folder_uid: Option<&str>, folder_id: i64| {
        let uid_ok = folder_uids.is_empty()
            || folder_uids.iter().any(|u| match folder_uid {
                None => u == "general",
                Some(f) => u == f,
            });
        let id_ok = folder_ids.is_empty() || folder_ids.contains(&folder_id);
        uid_ok && id_ok
    };
    let item_ok = |uid: &str, id: i64, title: &str| {
        (dash_uids.is_empty() || dash_uids.iter().any(|u| u == uid))
            && (dash_ids.is_empty() || dash_ids.contains(&id))
            && (query.is_empty() || title.to_lowercase().contains(&query))
    };
    let mut folders: Vec<Value> = Vec::new();
    let mut dashes: Vec<(String, Value)> = Vec::new();
    if starred {
        return Json(Vec::<Value>::new()).into_response();
    }
    if typ != "dash-db" && tags.is_empty() {
        let mut fs: Vec<&Folder> = store.folders.iter().filter(|f| in_folder(None, 0) && item_ok(&f.uid, f.id, &f.title)).collect();
        fs.sort_by_key(|f| f.title.to_lowercase());
        folders = fs.into_iter().map(folder_hit).collect();
    }
    if typ != "dash-folder" {
        for d in store.dashboards.values() {
            let folder = d.folder_uid.as_deref().and_then(|u| store.folder_by_uid(u));
            let folder_id = folder.map(|f| f.id).unwrap_or(0);
            if !in_folder(d.folder_uid.as_deref(), folder_id) || !item_ok(&d.uid, d.id, &d.title) {
                continue;
            }
            if !tags.iter().all(|t| d.tags.contains(t)) {
                continue;
            }
            dashes.push((d.title.to_lowercase(), dashboard_hit(d, folder)));
        }
        dashes.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let all: Vec<Value> = folders.into_iter().chain(dashes.into_iter().map(|(_, v)| v)).collect();
    let page_items: Vec<Value> = all.into_iter().skip((page - 1) * limit).take(limit).collect();
    Json(page_items).into_response()
}

async fn dashboard_by_uid(State(st): St, Path(uid): Path<String>, req: Request) -> Response {
    let role = req.extensions().get::<Role>().copied().unwrap_or(Role::Viewer);
    let store = st.store.read().unwrap();
    let Some(d) = store.dashboards.get(&uid) else {
        return error(StatusCode::NOT_FOUND, "Dashboard not found");
    };
    let folder = d.folder_uid.as_deref().and_then(|u| store.folder_by_uid(u));
    let mut model = d.model.clone();
    if let Some(o) = model.as_object_mut() {
        o.insert("id".into(), json!(d.id));
        o.insert("uid".into(), json!(d.uid));
        o.insert("version".into(), json!(d.version));
    }
    let slug = slugify(&d.title);
    let admin = role == Role::Admin;
    let perms = json!({"canAdd": admin, "canEdit": admin, "canDelete": admin});
    let (provisioned, external_id) = match &d.provisioning {
        Some(p) => (!p.allow_ui_updates, p.external_id.clone()),
        None => (false, String::new()),
    };
    let meta = json!({
        "type": "db",
        "canSave": admin, "canEdit": admin, "canAdmin": admin, "canStar": admin, "canDelete": admin,
        "slug": slug,
        "url": format!("/d/{}/{}", d.uid, slug),
        "expires": "0001-01-01T00:00:00Z",
        "created": d.created,
        "updated": d.updated,
        "updatedBy": "Anonymous", "createdBy": "Anonymous",
        "version": d.version,
        "hasAcl": false,
        "isFolder": false,
        "folderId": folder.map(|f| f.id).unwrap_or(0),
        "folderUid": folder.map(|f| f.uid.clone()).unwrap_or_default(),
        "folderTitle": folder.map(|f| f.title.clone()).unwrap_or_else(|| "General".into()),
        "folderUrl": folder.map(|f| format!("/dashboards/f/{}/{}", f.uid, slugify(&f.title))).unwrap_or_default(),
        "provisioned": provisioned,
        "provisionedExternalId": external_id,
        "annotationsPermissions": {"dashboard": perms, "organization": perms}
    });
    Json(json!({"dashboard": model, "meta": meta})).into_response()
}

async fn folders(State(st): St) -> Response {
    let store = st.store.read().unwrap();
    let list: Vec<Value> = store.folders.iter().map(|f| json!({"id": f.id, "uid": f.uid, "title": f.title})).collect();
    Json(list).into_response()
}

async fn folder_by_uid(State(st): St, Path(uid): Path<String>) -> Response {
    let store = st.store.read().unwrap();
    match store.folder_by_uid(&uid) {
        None => error(StatusCode::NOT_FOUND, "Folder not found"),
        Some(f) => Json(json!({
            "id": f.id, "uid": f.uid, "orgId": f.org_id, "title": f.title,
            "url": format!("/dashboards/f/{}/{}", f.uid, slugify(&f.title)),
            "hasAcl": false, "canSave": true, "canEdit": true, "canAdmin": true, "canDelete": true,
            "createdBy": "Anonymous", "created": f.created, "updatedBy": "Anonymous", "updated": f.updated, "version": f.version
        }))
        .into_response(),
    }
}

fn type_name(t: &str) -> (String, String) {
    match t {
        "prometheus" => ("Prometheus".into(), "public/app/plugins/datasource/prometheus/img/prometheus_logo.svg".into()),
        other => (other.to_string(), String::new()),
    }
}

fn ds_list_item(d: &Datasource) -> Value {
    let (name, logo) = type_name(&d.ds_type);
    json!({
        "id": d.id, "uid": d.uid, "orgId": d.org_id, "name": d.name, "type": d.ds_type,
        "typeName": name, "typeLogoUrl": logo, "access": d.access, "url": d.url,
        "user": d.user, "database": d.database, "basicAuth": d.basic_auth, "isDefault": d.is_default,
        "jsonData": d.json_data, "readOnly": d.read_only
    })
}

fn ds_dto(d: &Datasource) -> Value {
    let (_, logo) = type_name(&d.ds_type);
    let secure: Map<String, Value> = d.secure_json_data.keys().map(|k| (k.clone(), json!(true))).collect();
    json!({
        "id": d.id, "uid": d.uid, "orgId": d.org_id, "name": d.name, "type": d.ds_type,
        "typeLogoUrl": logo, "access": d.access, "url": d.url, "user": d.user, "database": d.database,
        "basicAuth": d.basic_auth, "basicAuthUser": d.basic_auth_user, "withCredentials": d.with_credentials,
        "isDefault": d.is_default, "jsonData": d.json_data, "secureJsonFields": secure,
        "version": d.version, "readOnly": d.read_only
    })
}

async fn datasources(State(st): St) -> Response {
    let store = st.store.read().unwrap();
    let mut list: Vec<&Datasource> = store.datasources.iter().collect();
    list.sort_by_key(|d| d.name.to_lowercase());
    Json(list.into_iter().map(ds_list_item).collect::<Vec<_>>()).into_response()
}

async fn datasource_by_uid(State(st): St, Path(uid): Path<String>) -> Response {
    let store = st.store.read().unwrap();
    match store.datasource_by_uid(&uid) {
        Some(d) => Json(ds_dto(d)).into_response(),
        None => error(StatusCode::NOT_FOUND, "Data source not found"),
    }
}

async fn datasource_by_name(State(st): St, Path(name): Path<String>) -> Response {
    let store = st.store.read().unwrap();
    match store.datasources.iter().find(|d| d.name == name) {
        Some(d) => Json(ds_dto(d)).into_response(),
        None => error(StatusCode::NOT_FOUND, "Data source not found"),
    }
}

fn valid_ds_uid(uid: &str) -> bool {
    !uid.is_empty() && uid.len() <= 40 && uid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

async fn datasource_health(State(st): St, Path(uid): Path<String>) -> Response {
    if !valid_ds_uid(&uid) {
        return error(StatusCode::BAD_REQUEST, "UID is invalid");
    }
    let ds = st.store.read().unwrap().datasource_by_uid(&uid).cloned();
    let Some(ds) = ds else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "Unable to load datasource metadata");
    };
    if ds.ds_type != "prometheus" {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"status": "UNKNOWN", "message": format!("grafana-double models the health check of the prometheus type only, not {:?}", ds.ds_type)})),
        )
            .into_response();
    }
    let (ok, message) = prom::health(&st.client, &ds).await;
    if ok {
        (StatusCode::OK, Json(json!({"status": "OK", "message": message}))).into_response()
    } else {
        st.log.log("datasource.prometheus", &[], "error", "Health check failed", &[("uid", &uid), ("error", &message)]);
        (StatusCode::BAD_REQUEST, Json(json!({"status": "ERROR", "message": message}))).into_response()
    }
}

/// `from`/`to`: epoch milliseconds, `now`, `now-<dur>`, `now+<dur>`, or RFC 3339.
pub fn parse_time(s: &str, now_ms: i64) -> Option<i64> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    if let Some(rest) = s.strip_prefix("now") {
        if rest.is_empty() {
            return Some(now_ms);
        }
        let (sign, dur) = if let Some(d) = rest.strip_prefix('-') {
            (-1, d)
        } else if let Some(d) = rest.strip_prefix('+') {
            (1, d)
        } else {
            return None;
        };
        let d = crate::interval::parse_interval(dur).ok()?;
        return Some(now_ms + sign * d.as_millis() as i64);
    }
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_millis())
}

async fn ds_query(State(st): St, _headers: HeaderMap, body: Bytes) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "bad request data");
    };
    let queries = req.get("queries").and_then(Value::as_array).cloned().unwrap_or_default();
    if queries.is_empty() {
        return error_id(StatusCode::BAD_REQUEST, "No queries found", "query.noQueries");
    }
    let now = chrono::Utc::now().timestamp_millis();
    let from_s = req.get("from").and_then(Value::as_str).unwrap_or("now-6h");
    let to_s = req.get("to").and_then(Value::as_str).unwrap_or("now");
    let (Some(from_ms), Some(to_ms)) = (parse_time(from_s, now), parse_time(to_s, now)) else {
        return error(StatusCode::BAD_REQUEST, "bad request data");
    };
    let mut seen = HashSet::new();
    let mut parsed = Vec::new();
    for q in &queries {
        let ref_id = q.get("refId").and_then(Value::as_str).unwrap_or("A").to_string();
        if !seen.insert(ref_id.clone()) {
            return error_id(StatusCode::BAD_REQUEST, &format!("Query {ref_id} is duplicated"), "query.duplicateRefId");
        }
        let ds_uid = match q.get("datasource") {
            Some(Value::Object(o)) => o.get("uid").and_then(Value::as_str).unwrap_or("").to_string(),
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        if ds_uid.is_empty() {
            return error_id(StatusCode::BAD_REQUEST, "Query does not contain a valid data source identifier", "query.invalidDatasourceId");
        }
        if ds_uid == "__expr__" || ds_uid == "grafana" || ds_uid == "-- Mixed --" {
            return error(StatusCode::BAD_REQUEST, &format!("grafana-double does not model the built-in datasource {ds_uid:?}"));
        }
        let Some(ds) = st.store.read().unwrap().datasource_by_uid(&ds_uid).cloned() else {
            return error(StatusCode::NOT_FOUND, "Data source not found");
        };
        let gs = |k: &str| q.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let gb = |k: &str| q.get(k).and_then(Value::as_bool).unwrap_or(false);
        let gi = |k: &str, d: i64| q.get(k).and_then(Value::as_f64).map(|f| f as i64).unwrap_or(d);
        parsed.push((
            ds,
            PromQuery {
                ref_id,
                expr: gs("expr"),
                range: gb("range"),
                instant: gb("instant"),
                legend_format: gs("legendFormat"),
                interval: gs("interval"),
                interval_ms: gi("intervalMs", 0),
                interval_factor: gi("intervalFactor", 1),
                max_data_points: gi("maxDataPoints", 100),
                from_ms,
                to_ms,
            },
        ));
    }
    let mut results = Map::new();
    let mut any_error = false;
    for (ds, q) in parsed {
        let r = if ds.ds_type != "prometheus" {
            prom::DataResponse {
                frames: vec![],
                error: Some(format!("grafana-double models the prometheus datasource type only, not {:?}", ds.ds_type)),
                status: 500,
            }
        } else if q.expr.is_empty() {
            // promlib skips queries with an empty expression
            prom::DataResponse { frames: vec![], error: None, status: 200 }
        } else {
            prom::execute(&st.client, &ds, &q).await
        };
        if let Some(e) = &r.error {
            any_error = true;
            st.log.log("tsdb.prometheus", &[], "error", "Query failed", &[("refId", &q.ref_id), ("error", e)]);
        }
        results.insert(q.ref_id.clone(), r.to_json());
    }
    let status = if any_error { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    (status, Json(json!({"results": results}))).into_response()
}

async fn frontend_settings(State(st): St) -> Response {
    let store = st.store.read().unwrap();
    let default = store.datasources.iter().find(|d| d.is_default).map(|d| d.name.clone()).unwrap_or_else(|| "-- Grafana --".into());
    let mut map = Map::new();
    for d in &store.datasources {
        map.insert(
            d.name.clone(),
            json!({"id": d.id, "uid": d.uid, "type": d.ds_type, "name": d.name, "url": d.url, "isDefault": d.is_default, "jsonData": d.json_data}),
        );
    }
    Json(json!({"defaultDatasource": default, "datasources": map, "buildInfo": {"version": GRAFANA_VERSION, "commit": COMMIT}})).into_response()
}

async fn reload_dashboards(State(st): St) -> Response {
    let providers = st.dash.lock().unwrap().providers.clone();
    for p in &providers {
        crate::reload_provider(&st, p);
    }
    Json(json!({"message": "Dashboards config reloaded"})).into_response()
}
