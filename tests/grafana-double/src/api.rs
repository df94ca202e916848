//! The HTTP API, with Grafana 12.0.2's response shapes (see README for sources).

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::prom::{self, PromQuery};
use crate::provisioning::dashboards::{go_rel, resolved_path};
use crate::state::{slugify, Dashboard, Datasource, Folder, LoginAttempt};
use crate::{AppState, COMMIT, GRAFANA_VERSION};

type St = State<Arc<AppState>>;

pub fn router(state: Arc<AppState>) -> Router {
    let authed = Router::new()
        .route("/api/user", get(user))
        .route("/api/user/password", put(change_password))
        .route("/api/admin/users/{id}/password", put(admin_set_password))
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

/// The signed-in user (absent for anonymous requests).
#[derive(Clone, Copy)]
struct UserId(i64);

/// Grafana's brute-force window (`loginAttemptsWindow`, loginattemptimpl).
const LOGIN_ATTEMPTS_WINDOW_S: i64 = 5 * 60;

/// The body Grafana 12 writes for a failed or blocked password login
/// (`password-auth.failed`, errutil Unauthorized; grafana#109138).
fn password_auth_failed() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"extra": null, "message": "Invalid username or password", "messageId": "password-auth.failed", "statusCode": 401, "traceID": ""})),
    )
        .into_response()
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, Json(json!({"extra": null, "message": "Unauthorized", "messageId": "auth.unauthorized", "statusCode": 401, "traceID": ""})))
        .into_response()
}

/// Go's `Request.BasicAuth`: scheme `Basic` (any case), standard base64, a colon.
fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, rest) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Grafana 12's password client (pkg/services/authn/clients/password.go)
/// with the login-attempt service (loginattemptimpl): a user name with
/// `max_attempts` failures in the last 5 minutes is refused before its
/// password is even looked at; every failed password login is counted
/// (lower-cased name, in the database); a success resets nothing.
#[allow(clippy::result_large_err)] // the Err is the ready 401 response
fn password_login(st: &AppState, username: &str, password: &str, ip: &str) -> Result<i64, Response> {
    let fail = |err: &str| {
        st.log.info("authn.service", "Failed to authenticate request", &[("client", "auth.client.basic"), ("error", err)]);
        password_auth_failed()
    };
    let mut store = st.store.write().unwrap();
    let now = unix_now();
    if st.cfg.brute_force_protection && store.login_attempts_since(username, now - LOGIN_ATTEMPTS_WINDOW_S) >= st.cfg.brute_force_max_attempts {
        return Err(fail("[password-auth.failed] too many consecutive incorrect login attempts for user - login for user temporarily blocked"));
    }
    if password.is_empty() {
        return Err(fail("[password-auth.failed] no password provided"));
    }
    let found = store.user_by_login_or_email(username).map(|u| (u.id, u.password_is(password)));
    if let Some((id, true)) = found {
        return Ok(id);
    }
    if st.cfg.brute_force_protection {
        // the service's cleanup job drops attempts older than 10 minutes
        store.login_attempts.retain(|a| a.created >= now - 600);
        store.login_attempts.push(LoginAttempt { username: username.to_lowercase(), ip_address: ip.to_string(), created: now });
        let _ = st.persist(&store);
    }
    let why = match found {
        None => "[password-auth.failed] failed to authenticate identity: [user.not-found] user not found",
        Some(_) => "[password-auth.failed] failed to authenticate identity: [password-auth.invalid] invalid password",
    };
    Err(fail(why))
}

async fn auth(State(st): St, mut req: Request, next: Next) -> Response {
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    let ip = req.extensions().get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_default();
    let basic = header.as_deref().and_then(parse_basic);
    let bearer = header.as_deref().is_some_and(|h| h.split_once(' ').is_some_and(|(s, _)| s.eq_ignore_ascii_case("bearer")));
    // With [auth.basic] enabled = false the basic client is not registered:
    // a Basic header is then like no credentials at all (authnimpl).
    if let Some((u, p)) = basic.filter(|_| st.cfg.basic_auth_enabled) {
        match password_login(&st, &u, &p, &ip) {
            Ok(id) => {
                req.extensions_mut().insert(Role::Admin);
                req.extensions_mut().insert(UserId(id));
                return next.run(req).await;
            }
            Err(resp) => {
                st.log.log("context", &[], "info", "Request Completed", &[("method", req.method().as_str()), ("path", req.uri().path()), ("status", "401")]);
                return resp;
            }
        }
    }
    if bearer {
        // The double has no service accounts or API keys.
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"extra": null, "message": "Invalid API key", "messageId": "api-key.invalid", "statusCode": 401, "traceID": ""})),
        )
            .into_response();
    }
    if !st.cfg.anonymous_enabled {
        return unauthorized();
    }
    let role = if st.cfg.anonymous_org_role.eq_ignore_ascii_case("admin") { Role::Admin } else { Role::Viewer };
    req.extensions_mut().insert(role);
    next.run(req).await
}

/// `apiHealthHandler` (pkg/api/http_server.go): 200 with `database: ok`, or
/// 503 with `database: failing` when the database probe fails (cached 5 s).
async fn health(State(st): St) -> Response {
    let ok = st.database_healthy();
    let body = json!({"commit": COMMIT, "database": if ok { "ok" } else { "failing" }, "version": GRAFANA_VERSION});
    let text = serde_json::to_string_pretty(&body).unwrap_or_default();
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, [(header::CONTENT_TYPE, "application/json; charset=UTF-8")], text).into_response()
}

async fn user(State(st): St, req: Request) -> Response {
    let Some(UserId(id)) = req.extensions().get::<UserId>().copied() else {
        // anonymous: Grafana answers with the anonymous identity; the double keeps it minimal
        return Json(json!({"id": 0, "login": "", "email": "", "name": "", "orgId": 1, "isGrafanaAdmin": false, "isAnonymous": true})).into_response();
    };
    let store = st.store.read().unwrap();
    let Some(u) = store.users.iter().find(|u| u.id == id) else {
        return error(StatusCode::NOT_FOUND, "user not found");
    };
    Json(json!({
        "id": u.id, "uid": u.uid, "email": u.email, "name": u.name, "login": u.login,
        "theme": "", "orgId": 1, "isGrafanaAdmin": u.is_admin, "isDisabled": false, "isExternal": false,
        "isExternallySynced": false, "isGrafanaAdminExternallySynced": false, "authLabels": [],
        "updatedAt": u.updated, "createdAt": u.created,
        "avatarUrl": "/avatar/46d229b033af06a191ff2267bca9ae56", "isProvisioned": false
    }))
    .into_response()
}

/// Grafana's password rule without `password_policy`: too short below 4
/// characters (pkg/services/user/password.go; the exact bound varies between
/// releases, see README).
fn password_too_short(p: &str) -> bool {
    p.chars().count() < 4
}

/// `PUT /api/user/password` (pkg/api/user.go `ChangeUserPassword`, the user
/// service's Update with OldPassword): the old password must match, then the
/// new one must pass the password rule.
async fn change_password(State(st): St, req: Request) -> Response {
    let user_id = req.extensions().get::<UserId>().copied();
    let Ok(body) = axum::body::to_bytes(req.into_body(), 1 << 20).await else {
        return error(StatusCode::BAD_REQUEST, "bad request data");
    };
    let Some(UserId(id)) = user_id else {
        return error(StatusCode::FORBIDDEN, "Endpoint only available for users");
    };
    let Ok(form) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "bad request data");
    };
    let old = form.get("oldPassword").and_then(Value::as_str).unwrap_or("");
    let new = form.get("newPassword").and_then(Value::as_str).unwrap_or("");
    let mut store = st.store.write().unwrap();
    let Some(u) = store.users.iter_mut().find(|u| u.id == id) else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "Failed to change user password");
    };
    if !u.password_is(old) {
        return error_id(StatusCode::BAD_REQUEST, "Invalid old password", "user.password-missmatch");
    }
    if password_too_short(new) {
        return error_id(StatusCode::BAD_REQUEST, "New password is too short", "password.password-policy-too-short");
    }
    u.set_password(new);
    if st.persist(&store).is_err() {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "Failed to change user password");
    }
    Json(json!({"message": "User password changed"})).into_response()
}

/// `PUT /api/admin/users/:id/password` (pkg/api/admin_users.go
/// `AdminUpdateUserPassword`): Grafana admins only; sets the password,
/// clears the user's failed logins.
async fn admin_set_password(State(st): St, Path(id): Path<String>, req: Request) -> Response {
    let caller = req.extensions().get::<UserId>().copied();
    let Ok(body) = axum::body::to_bytes(req.into_body(), 1 << 20).await else {
        return error(StatusCode::BAD_REQUEST, "bad request data");
    };
    let mut store = st.store.write().unwrap();
    let is_admin = caller.is_some_and(|UserId(c)| store.users.iter().any(|u| u.id == c && u.is_admin));
    if !is_admin {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"accessErrorId": "ACE0000000000", "message": "You'll need additional permissions to perform this action. Permissions needed: users.password:update", "title": "Access denied"})),
        )
            .into_response();
    }
    let Ok(form) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "bad request data");
    };
    let Ok(id) = id.parse::<i64>() else {
        return error(StatusCode::BAD_REQUEST, "id is invalid");
    };
    let password = form.get("password").and_then(Value::as_str).unwrap_or("");
    let Some(u) = store.users.iter_mut().find(|u| u.id == id) else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "Failed to update user password");
    };
    if password_too_short(password) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "Failed to update user password");
    }
    u.set_password(password);
    let login = u.login.to_lowercase();
    store.login_attempts.retain(|a| a.username != login);
    if st.persist(&store).is_err() {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "Failed to update user password");
    }
    Json(json!({"message": "User password updated"})).into_response()
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
    let providers = st.dash.lock().unwrap().providers.clone();
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
    // pkg/api/dashboard.go: both read from the provider's configuration at
    // request time; the external id is the stored path made relative to the
    // provider's path as it resolves *now* (a swapped symlink shows at once)
    let (provisioned, external_id) = match &d.provisioning {
        Some(p) => {
            let provider = providers.iter().find(|x| x.name == p.provider);
            let allow_ui_updates = provider.is_some_and(|x| x.allow_ui_updates);
            let root = provider.map(|x| resolved_path(x, &st.log).display().to_string()).unwrap_or_default();
            let ext = go_rel(&root, &p.file).unwrap_or_else(|e| {
                st.log.warn("http.server", "Failed to create ProvisionedExternalId", &[("err", &e)]);
                String::new()
            });
            (!allow_ui_updates, ext)
        }
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
