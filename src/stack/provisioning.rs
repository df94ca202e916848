//! Typed models of Grafana's provisioning files: datasources
//! (`provisioning/datasources/*.yml`) and dashboard providers
//! (`provisioning/dashboards/*.yml`), with the stack directory and dashboard files each
//! provider serves. `lint` checks them; `verify` expects what they provision.
//!
//! Fields are optional where Grafana's are, and unknown keys are kept in `extra`
//! (Grafana reads these files leniently). Facts: research/grafana-facts.md §1.

use super::paths::{container_to_stack, FileList};
use super::prometheus::Extra;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::time::Duration;

/// Grafana's default `updateIntervalSeconds` of a dashboard provider.
pub const DEFAULT_UPDATE_INTERVAL: Duration = Duration::from_secs(10);

/// A value of the expected type, or None for any other (Grafana reads these settings
/// from strings too, with environment expansion; a value of another type is not this
/// model's to reject).
fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let v = serde_yaml::Value::deserialize(d)?;
    Ok(serde_yaml::from_value(v).ok())
}

/// A datasource provisioning file.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DatasourceFile {
    #[serde(default)]
    pub datasources: Option<Vec<Datasource>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// One provisioned datasource.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Datasource {
    pub name: Option<String>,
    /// Plugin type (`prometheus`, ...).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub uid: Option<String>,
    pub url: Option<String>,
    pub is_default: Option<bool>,
    /// The organisation (1 when unset).
    pub org_id: Option<i64>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl DatasourceFile {
    pub fn from_yaml(text: &str) -> Result<DatasourceFile, serde_yaml::Error> {
        Ok(serde_yaml::from_str::<Option<DatasourceFile>>(text)?.unwrap_or_default())
    }

    pub fn datasources(&self) -> &[Datasource] {
        self.datasources.as_deref().unwrap_or_default()
    }
}

impl Datasource {
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
    pub fn kind(&self) -> &str {
        self.kind.as_deref().unwrap_or("")
    }
    pub fn url(&self) -> &str {
        self.url.as_deref().unwrap_or("")
    }
    pub fn is_default(&self) -> bool {
        self.is_default == Some(true)
    }
    /// The organisation the datasource belongs to (Grafana's default: 1).
    pub fn org_id(&self) -> i64 {
        self.org_id.filter(|o| *o > 0).unwrap_or(1)
    }
}

/// A dashboard provider file.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProviderFile {
    #[serde(default)]
    pub providers: Option<Vec<Provider>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// One dashboard provider.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provider {
    pub name: Option<String>,
    /// Only `file` is supported.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub folder: Option<String>,
    pub folder_uid: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub allow_ui_updates: Option<bool>,
    #[serde(default, deserialize_with = "lenient")]
    pub update_interval_seconds: Option<u64>,
    /// Grafana keeps `options` as an untyped map (`map[string]any`) and asks it for
    /// `path` (or the legacy `folder`) and `foldersFromFilesStructure`.
    #[serde(default)]
    pub options: BTreeMap<String, serde_yaml::Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl ProviderFile {
    pub fn from_yaml(text: &str) -> Result<ProviderFile, serde_yaml::Error> {
        Ok(serde_yaml::from_str::<Option<ProviderFile>>(text)?.unwrap_or_default())
    }

    pub fn providers(&self) -> &[Provider] {
        self.providers.as_deref().unwrap_or_default()
    }
}

impl Provider {
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }

    pub fn folder(&self) -> &str {
        self.folder.as_deref().unwrap_or("")
    }

    /// The directory the provider reads (`options.path`, else the legacy `options.folder`)
    /// as the container sees it; None when it is not a string (Grafana then fails with
    /// "path param is not a string").
    pub fn path(&self) -> Option<&str> {
        self.options.get("path").or(self.options.get("folder")).and_then(|v| v.as_str())
    }

    pub fn folders_from_files_structure(&self) -> bool {
        self.options.get("foldersFromFilesStructure").and_then(|v| v.as_bool()).unwrap_or(false)
    }

    pub fn allow_ui_updates(&self) -> bool {
        self.allow_ui_updates.unwrap_or(false)
    }

    /// How often Grafana polls the provider's directory.
    pub fn update_interval(&self) -> Duration {
        self.update_interval_seconds.map(Duration::from_secs).unwrap_or(DEFAULT_UPDATE_INTERVAL)
    }

    /// The stack directory the provider's path maps to; None when it has no path or the
    /// path is outside the release the deploy syncs.
    pub fn stack_dir(&self) -> Option<String> {
        self.path().and_then(container_to_stack)
    }

    /// The dashboard files the provider serves: every `.json` file under its directory.
    pub fn dashboards(&self, files: &FileList) -> Vec<String> {
        self.stack_dir().map(|d| files.dashboards(&d)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_settings_do_not_reject_the_file() {
        let f = ProviderFile::from_yaml(
            "providers:\n- name: a\n  allowUiUpdates: \"true\"\n  updateIntervalSeconds: [1]\n  options: {path: /stackproof/current/d, foldersFromFilesStructure: true}\n",
        )
        .unwrap();
        let p = &f.providers()[0];
        assert!(!p.allow_ui_updates());
        assert_eq!(p.update_interval(), DEFAULT_UPDATE_INTERVAL);
        assert!(p.folders_from_files_structure());
        assert_eq!(p.stack_dir().as_deref(), Some("d"));
    }

    #[test]
    fn legacy_folder_option_is_the_path_and_a_number_is_none() {
        let f = ProviderFile::from_yaml("providers:\n- {name: a, options: {folder: /stackproof/current/x}}\n- {name: b, options: {path: 3}}\n").unwrap();
        assert_eq!(f.providers()[0].path(), Some("/stackproof/current/x"));
        assert_eq!(f.providers()[1].path(), None);
    }

    #[test]
    fn empty_files_provision_nothing() {
        assert!(DatasourceFile::from_yaml("").unwrap().datasources().is_empty());
        assert!(ProviderFile::from_yaml("apiVersion: 1\n").unwrap().providers().is_empty());
        assert!(DatasourceFile::from_yaml("datasources: [{name: x, isDefault: maybe}]\n").is_err());
    }
}
