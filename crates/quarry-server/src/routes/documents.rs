//! `/api/documents` (list, get, delete), `/api/sync` and `/api/ingest/{file,url}` (background jobs) and
//! `/api/jobs/ID`.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use quarry_core::StoredDocument;
use quarry_ingest::crawl::CrawlOptions;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::access::Caller;
use crate::error::{Error, Result};
use crate::jobs::Work;
use crate::keys::{hex, Scope};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct Page {
    #[serde(default)]
    pub offset: usize,
    pub limit: Option<usize>,
}

fn summary(d: &StoredDocument) -> Value {
    json!({
        "id": d.id, "source": d.source, "title": d.title, "metadata": d.metadata,
        "chunks": d.chunk_ids.len(), "characters": d.text.chars().count(),
    })
}

/// The documents the caller may read, in source order, a page at a time.
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(page): Query<Page>,
) -> Result<Json<Value>> {
    caller.require(Scope::Read)?;
    let limit = page.limit.unwrap_or(50).min(500);
    state
        .blocking(move |e| {
            let index = e.index();
            let mut total = 0;
            let mut out = Vec::new();
            for src in index.list_sources()? {
                for id in &src.doc_ids {
                    let Some(d) = index.document(id)? else { continue };
                    if !caller.can_read(&d.metadata) {
                        continue;
                    }
                    if total >= page.offset && out.len() < limit {
                        out.push(summary(&d));
                    }
                    total += 1;
                }
            }
            Ok(Json(
                json!({ "documents": out, "total": total, "offset": page.offset, "limit": limit }),
            ))
        })
        .await
}

/// A document the caller may read: 404 for one that does not exist and for one that is not theirs.
fn readable(state: &crate::engine::Engine, caller: &Caller, id: &str) -> Result<StoredDocument> {
    state
        .index()
        .document(id)?
        .filter(|d| caller.can_read(&d.metadata))
        .ok_or_else(|| Error::NotFound(format!("document `{id}`")))
}

pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    caller.require(Scope::Read)?;
    state
        .blocking(move |e| {
            let d = readable(e, &caller, &id)?;
            let mut v = summary(&d);
            v["text"] = json!(d.text);
            v["chunk_ids"] = json!(d.chunk_ids);
            Ok(Json(v))
        })
        .await
}

pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    caller.require(Scope::Ingest)?;
    state
        .blocking(move |e| {
            readable(e, &caller, &id)?;
            let n = e.index().delete_documents(std::slice::from_ref(&id))?;
            e.index().flush()?;
            e.invalidate();
            Ok(Json(json!({ "deleted": n, "id": id })))
        })
        .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncBody {
    /// The id of a document the caller may read.
    pub document: String,
}

/// `POST /api/sync`: reads a document's source again in a background job (every document of that
/// source follows: a CSV file's rows, a page's one document). Uploads have no source to re-read (400:
/// upload the file again). The documents keep the access labels they carry.
pub async fn resync(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<SyncBody>,
) -> Result<impl IntoResponse> {
    caller.require(Scope::Ingest)?;
    let id = body.document;
    let doc = state.blocking(move |e| readable(e, &caller, &id)).await?;
    if doc.source.starts_with("upload://") {
        return Err(Error::BadRequest(format!(
            "document `{}` was uploaded: there is no source to read again; upload the file again to update it",
            doc.id
        )));
    }
    if doc.source.contains("://") && !crate::jobs::is_web(&doc.source) {
        return Err(Error::BadRequest(format!(
            "document `{}` comes from `{}`, which the server does not read again; run `quarry sync` or \
             `quarry ingest` with the same source",
            doc.id,
            doc.source.split("://").next().unwrap_or_default()
        )));
    }
    let mut labels = quarry_core::Metadata::new();
    for key in [crate::access::TENANT_KEY, crate::access::GROUPS_KEY] {
        if let Some(v) = doc.metadata.get(key) {
            labels.insert(key.to_string(), v.clone());
        }
    }
    let tenant = tenant_of(&labels);
    let job = state.jobs.submit(Work::Resync { source: doc.source }, labels, tenant)?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

#[derive(Debug, Deserialize)]
pub struct FileParams {
    /// The file name; its extension (and content) choose the loader.
    pub name: String,
    /// Comma-separated groups that may read the documents (default: everyone in the tenant).
    #[serde(default)]
    pub groups: Option<String>,
    /// For keys that span tenants: the tenant the documents belong to.
    pub tenant: Option<String>,
}

/// The tenant an access-label set names.
fn tenant_of(labels: &quarry_core::Metadata) -> Option<String> {
    labels
        .get(crate::access::TENANT_KEY)
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

fn groups(list: Option<&str>) -> Vec<String> {
    list.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect()
}

/// A file name safe to keep on disk: its last path component, limited to letters, digits, `.`, `_`, `-`.
fn safe_name(name: &str) -> Result<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let clean = clean.trim_start_matches('.').to_string();
    if clean.is_empty() || clean.len() > 200 {
        return Err(Error::BadRequest(format!("unusable file name `{name}`")));
    }
    Ok(clean)
}

/// `POST /api/ingest/file?name=notes.md[&groups=a,b][&tenant=t]` with the file as the body: saved, then
/// ingested by a background job as `upload://TENANT/NAME` (uploading the same name again updates it).
pub async fn ingest_file(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(p): Query<FileParams>,
    body: Bytes,
) -> Result<impl IntoResponse> {
    caller.require(Scope::Ingest)?;
    let labels = caller.labels(p.tenant.as_deref(), &groups(p.groups.as_deref()))?;
    if body.is_empty() {
        return Err(Error::BadRequest("empty upload".into()));
    }
    let name = safe_name(&p.name)?;
    let tenant = tenant_of(&labels);
    let dir = state.data_dir.join("uploads").join(hex(&rand::random::<[u8; 8]>()));
    let path = dir.join(&name);
    let written = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(&path, &body)
        })
        .await?
    };
    written.map_err(|e| Error::Internal(format!("saving the upload: {e}")))?;
    let source = format!("upload://{}/{name}", tenant.as_deref().unwrap_or("_"));
    let job = state.jobs.submit(Work::File { path, source }, labels, tenant)?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlBody {
    pub url: String,
    #[serde(default)]
    pub groups: Vec<String>,
    pub tenant: Option<String>,
    /// Link hops from the start page (default 0: the page only).
    #[serde(default)]
    pub depth: usize,
    /// Pages fetched at most (default 20, at most 1000).
    pub max_pages: Option<usize>,
}

/// `POST /api/ingest/url`: crawls a page (and, with `depth`, pages it links to on the same site) in a
/// background job.
pub async fn ingest_url(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<UrlBody>,
) -> Result<impl IntoResponse> {
    caller.require(Scope::Ingest)?;
    let labels = caller.labels(body.tenant.as_deref(), &body.groups)?;
    if !(body.url.starts_with("http://") || body.url.starts_with("https://")) {
        return Err(Error::BadRequest("url must start with http:// or https://".into()));
    }
    let tenant = tenant_of(&labels);
    let crawl = CrawlOptions {
        max_depth: body.depth.min(5),
        max_pages: body.max_pages.unwrap_or(20).clamp(1, 1000),
        ..Default::default()
    };
    let job = state.jobs.submit(Work::Url { url: body.url, crawl }, labels, tenant)?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

#[derive(Debug, Deserialize)]
pub struct JobsParams {
    pub limit: Option<usize>,
}

/// The caller's tenant's latest jobs, newest first (every tenant's for keys that span tenants).
pub async fn jobs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(p): Query<JobsParams>,
) -> Result<Json<Value>> {
    caller.require(Scope::Ingest)?;
    let jobs = state
        .jobs
        .list(caller.tenant.as_deref(), p.limit.unwrap_or(20).clamp(1, 200))?;
    Ok(Json(json!({ "jobs": jobs })))
}

/// A job's state; 404 for jobs of other tenants.
pub async fn job(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse> {
    caller.require(Scope::Ingest)?;
    let job = state
        .jobs
        .get(&id)?
        .filter(|j| caller.tenant.is_none() || j.tenant == caller.tenant)
        .ok_or_else(|| Error::NotFound(format!("job `{id}`")))?;
    Ok(Json(job))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_names_cannot_leave_their_folder() {
        let cases = [
            ("notes.md", Some("notes.md")),
            ("../../etc/passwd", Some("passwd")),
            ("..\\x.txt", Some("x.txt")),
            ("a b.pdf", Some("a_b.pdf")),
            ("..", None),
            ("", None),
            (".hidden", Some("hidden")),
        ];
        for (name, want) in cases {
            assert_eq!(safe_name(name).ok().as_deref(), want, "{name:?}");
        }
    }
}
