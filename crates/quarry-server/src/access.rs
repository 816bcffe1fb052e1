//! Who is calling, and which documents they may read.
//!
//! Documents carry access labels in their metadata: `access.tenant` (one tenant) and `access.groups`
//! (groups allowed to read them, or `*` for every reader of the tenant). A caller's labels become a
//! metadata [`Filter`] that is ANDed into every index query (BM25 and the HNSW walk), so a chunk the
//! caller may not read is never a candidate — it cannot be ranked, cited, cached for them, or quoted
//! by a generator. Lookups by id (`GET /api/documents/ID`) check the same filter against the
//! document's metadata and answer 404 for both "missing" and "not yours".

use quarry_core::{Filter, MetaValue, Metadata};

use crate::error::{Error, Result};
use crate::keys::{check_label, KeyRecord, Scope};

pub const TENANT_KEY: &str = "access.tenant";
pub const GROUPS_KEY: &str = "access.groups";
/// The group label of a document every reader of its tenant may read.
pub const PUBLIC: &str = "*";

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    /// The API key's id (`None` when the server runs without keys).
    pub key_id: Option<String>,
    pub scopes: Vec<Scope>,
    /// `None`: every tenant (admin keys without a tenant, or a server without keys).
    pub tenant: Option<String>,
    pub groups: Vec<String>,
}

impl Caller {
    pub fn from_key(k: &KeyRecord) -> Caller {
        Caller {
            key_id: Some(k.id.clone()),
            scopes: k.scopes.clone(),
            tenant: k.tenant.clone(),
            groups: k.groups.clone(),
        }
    }

    /// The caller of a server started without keys (`--no-auth`): everything, everywhere.
    pub fn unrestricted() -> Caller {
        Caller {
            key_id: None,
            scopes: vec![Scope::Admin],
            tenant: None,
            groups: Vec::new(),
        }
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }

    /// Ok when the caller has `scope`, else 403.
    pub fn require(&self, scope: Scope) -> Result<()> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(Error::Forbidden(match scope {
                Scope::Read => "read",
                Scope::Ingest => "ingest",
                Scope::Eval => "eval",
                Scope::Admin => "admin",
            }))
        }
    }

    /// The filter every retrieval for this caller carries; `None` for callers who may read everything.
    pub fn filter(&self) -> Option<Filter> {
        let tenant = self.tenant.as_ref()?;
        let mut groups: Vec<MetaValue> = vec![PUBLIC.into()];
        groups.extend(self.groups.iter().map(|g| MetaValue::String(g.clone())));
        Some(Filter::And(vec![
            Filter::Eq {
                key: TENANT_KEY.into(),
                value: MetaValue::String(tenant.clone()),
            },
            Filter::In {
                key: GROUPS_KEY.into(),
                values: groups,
            },
        ]))
    }

    /// The caller's access filter ANDed with filters from the request. Whatever the request asks for, the
    /// result can only narrow what the caller may read.
    pub fn restrict(&self, requested: Vec<Filter>) -> Option<Filter> {
        let mut all: Vec<Filter> = self.filter().into_iter().collect();
        all.extend(requested);
        Filter::all(all)
    }

    pub fn can_read(&self, meta: &Metadata) -> bool {
        self.filter().is_none_or(|f| f.matches(meta))
    }

    /// The labels a document ingested by this caller gets. A tenant key writes into its own tenant
    /// only; a key that spans tenants names one (or writes unlabelled documents, which only such keys
    /// read). `groups` empty: public within the tenant.
    pub fn labels(&self, tenant: Option<&str>, groups: &[String]) -> Result<Metadata> {
        let tenant = match (&self.tenant, tenant) {
            (Some(own), Some(asked)) if own != asked => {
                return Err(Error::Forbidden("admin (to write into another tenant)"));
            }
            (Some(own), _) => Some(own.as_str()),
            (None, asked) => asked,
        };
        let mut meta = Metadata::new();
        let Some(tenant) = tenant else {
            if !groups.is_empty() {
                return Err(Error::BadRequest("groups need a tenant".into()));
            }
            return Ok(meta);
        };
        check_label("tenant", tenant)?;
        for g in groups {
            check_label("group", g)?;
        }
        meta.insert(TENANT_KEY.into(), MetaValue::String(tenant.into()));
        let groups = if groups.is_empty() {
            vec![MetaValue::String(PUBLIC.into())]
        } else {
            groups.iter().map(|g| MetaValue::String(g.clone())).collect()
        };
        meta.insert(GROUPS_KEY.into(), MetaValue::List(groups));
        Ok(meta)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn caller(tenant: &str, groups: &[&str]) -> Caller {
        Caller {
            key_id: Some("k".into()),
            scopes: vec![Scope::Read, Scope::Ingest],
            tenant: Some(tenant.into()),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn readers_see_their_tenant_public_and_their_groups_only() {
        let acme_eng = caller("acme", &["eng"]);
        let public = acme_eng.labels(None, &[]).unwrap();
        let eng = acme_eng.labels(None, &["eng".into()]).unwrap();
        let hr = acme_eng.labels(None, &["hr".into()]).unwrap();
        let cases = [
            (&acme_eng, &public, true),
            (&acme_eng, &eng, true),
            (&acme_eng, &hr, false),
        ];
        for (c, meta, want) in cases {
            assert_eq!(c.can_read(meta), want, "{meta:?}");
        }
        let other = caller("globex", &["eng"]);
        assert!(!other.can_read(&public) && !other.can_read(&eng));
        assert!(
            !acme_eng.can_read(&Metadata::new()),
            "unlabelled documents are not a tenant's"
        );
        assert!(Caller::unrestricted().can_read(&hr));
    }

    #[test]
    fn request_filters_only_narrow() {
        let c = caller("acme", &[]);
        let injected = Filter::parse("access.tenant=globex").unwrap();
        let f = c.restrict(vec![injected]).unwrap();
        let globex = caller("globex", &[]).labels(None, &[]).unwrap();
        let acme = c.labels(None, &[]).unwrap();
        assert!(!f.matches(&globex) && !f.matches(&acme));
        let negated = c.restrict(vec![Filter::parse("access.tenant!=acme").unwrap()]).unwrap();
        assert!(!negated.matches(&globex));
    }

    #[test]
    fn tenants_write_into_their_own_tenant_only() {
        let c = caller("acme", &[]);
        assert!(c.labels(Some("globex"), &[]).is_err());
        assert!(c.labels(Some("acme"), &["bad group".into()]).is_err());
        let admin = Caller::unrestricted();
        let m = admin.labels(Some("globex"), &["eng".into()]).unwrap();
        assert_eq!(m[TENANT_KEY], MetaValue::String("globex".into()));
        assert!(admin.labels(None, &[]).unwrap().is_empty());
    }
}
