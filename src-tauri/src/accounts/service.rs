//! The opened vault: store + data key. The one object the desktop app, `serve` and the CLI share;
//! each face calls these functions and maps `AppError` once.

use crate::account::{now_ms, AccountView};
use crate::error::AppError;
use crate::store::{SharedStore, Store};
use crate::vault::{Field, KeyRequest, KeyStoreKind, Vault, VaultError};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const KEY_CHECK_META: &str = "key_check";
const LOCAL_KEY_META: &str = "local_api_key";

pub struct Service {
    store: Arc<Store>,
    /// The same store behind the seam the endpoint and the refresh engine hold (`store::seam`).
    shared: SharedStore,
    vault: Vault,
    data_dir: PathBuf,
}

/// What `store_info` shows: where data is, how it is protected, and any warning to surface.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ts_rs::TS)]
#[ts(export)]
pub struct StoreInfo {
    pub data_dir: String,
    pub key_store: KeyStoreKind,
    pub warning: Option<String>,
}

impl Service {
    /// Opens the store in `data_dir` and unlocks its data key (creating one only for a store
    /// that has nothing sealed yet). When unlocking fails on a store this call created, the new
    /// empty database (and the data dir, if this call created it) is removed again: a failed
    /// first run leaves nothing behind.
    pub fn open(data_dir: &Path, kind: KeyStoreKind) -> Result<Service, AppError> {
        let dir_existed = data_dir.exists();
        let db_existed = data_dir.join(crate::store::DB_FILE_NAME).exists();
        let store = Store::open(data_dir)?;
        match Service::unlock(&store, data_dir, kind) {
            Ok(vault) => {
                let store = Arc::new(store);
                Ok(Service {
                    shared: store.clone(),
                    store,
                    vault,
                    data_dir: data_dir.to_path_buf(),
                })
            }
            Err(e) => {
                if !db_existed && store.discard_if_unused() && !dir_existed {
                    // Only an empty dir goes: remove_dir refuses anything else.
                    let _ = std::fs::remove_dir(data_dir);
                }
                Err(e)
            }
        }
    }

    fn unlock(store: &Store, data_dir: &Path, kind: KeyStoreKind) -> Result<Vault, AppError> {
        let store_id = store.store_id().to_string();
        let req = KeyRequest {
            store_id: &store_id,
            data_dir,
            kind,
        };
        let vault = match Vault::load(&req)? {
            Some(v) => v,
            // No key yet: mint one under the store's write lock, after checking again under it,
            // so two processes opening a new store at once can never mint two keys.
            None => store.with_meta_lock(|meta| {
                if let Some(v) = Vault::load(&req)? {
                    return Ok(v);
                }
                if meta.has_sealed_data()? {
                    return Err(AppError::from(VaultError::KeyMissing {
                        store_id: store_id.clone(),
                    }));
                }
                let v = Vault::create(&req)?;
                meta.set(KEY_CHECK_META, &v.key_check())?;
                Ok(v)
            })?,
        };
        match store.meta_get(KEY_CHECK_META)? {
            Some(blob) if !vault.verify_key_check(&blob) => {
                return Err(VaultError::KeyMismatch { store_id }.into());
            }
            Some(_) => {}
            None => store.meta_set(KEY_CHECK_META, &vault.key_check())?,
        }
        Ok(vault)
    }

    /// Opens the store the environment names (`CODEX_VAULT_HOME`, `CODEX_VAULT_KEY_STORE`).
    pub fn open_default() -> Result<Service, AppError> {
        let kind = KeyStoreKind::from_env().map_err(crate::error::ConfigError::KeyStoreSetting)?;
        Service::open(&crate::paths::data_dir()?, kind)
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The store as the endpoint and the refresh engine hold it: behind the seam
    /// (`store::seam`), so another backend can stand in without either of them changing.
    pub fn shared_store(&self) -> &SharedStore {
        &self.shared
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    pub fn info(&self) -> StoreInfo {
        StoreInfo {
            data_dir: self.data_dir.display().to_string(),
            key_store: self.vault.kind(),
            warning: match self.vault.kind() {
                KeyStoreKind::Keychain => None,
                KeyStoreKind::File => Some(format!(
                    "The data key is kept in a file ({}), not in the OS keychain (CODEX_VAULT_KEY_STORE=file): anyone who can read your files can read your sign-ins.",
                    self.data_dir.join("data-key").display()
                )),
            },
        }
    }

    pub fn list(&self) -> Result<Vec<AccountView>, AppError> {
        // A read, never a write: a shared-grant flag whose Codex auth.json is gone (or signed in
        // elsewhere) shows cleared here; health clears it in the store (`recheck_shared_grants`).
        let stale = crate::health::shared_grants::stale(&*self.store).unwrap_or_else(|e| {
            tracing::warn!("cannot re-check shared sign-ins: {e}");
            Vec::new()
        });
        let now = now_ms();
        // A live refresh lease (any process) shows as "refreshing" on an otherwise healthy account.
        let refreshing: Vec<String> = self
            .store
            .active_leases()?
            .into_iter()
            .filter(|(_, holder)| !crate::refresh::holder_is_dead(holder))
            .map(|(id, _)| id)
            .collect();
        let mut views: Vec<AccountView> = self
            .store
            .list_accounts()?
            .iter()
            .map(|a| {
                let mut v = a.view(now);
                if v.status == crate::account::Status::Healthy && refreshing.contains(&a.id) {
                    v.status = crate::account::Status::Refreshing;
                }
                if stale.contains(&a.id) {
                    v.shared_grant = false;
                    v.shared_grant_where = None;
                }
                v
            })
            .collect();
        // Rotations held in memory only (their commit failed) are known to the process holding
        // them: this one's directly, a live `serve` or app's through its `/v1/accounts`.
        crate::refresh::overlay_held(&mut views);
        self.overlay_held_elsewhere(&mut views);
        Ok(views)
    }

    /// Asks the live listener of this store, when it is another process, which rotations it
    /// holds in memory. Best effort and quick (loopback, a short timeout): a listener that does
    /// not answer leaves the list as the store has it.
    fn overlay_held_elsewhere(&self, views: &mut [AccountView]) {
        let Some(pid) = crate::listeners::other_live_pid(&self.data_dir) else {
            return;
        };
        if pid == std::process::id() || views.is_empty() {
            return;
        }
        let Ok(setting) = self.store.setting(crate::listeners::SETTING_PORT) else {
            return;
        };
        let port = crate::listeners::current_port(
            &self.data_dir,
            crate::listeners::configured_port(setting),
        );
        // Only an existing key: listing must never mint one as a side effect.
        let Ok(Some(blob)) = self.store.meta_get(LOCAL_KEY_META) else {
            return;
        };
        let Ok(key) = self.vault.open("", Field::LocalApiKey, &blob) else {
            return;
        };
        let Some(remote) = crate::loopback::get_json(port, "/v1/accounts", &key) else {
            return;
        };
        let Ok(remote) = serde_json::from_value::<Vec<AccountView>>(remote) else {
            return;
        };
        for v in views.iter_mut() {
            if let Some(h) = remote
                .iter()
                .find(|r| r.id == v.id)
                .and_then(|r| r.held_rotation.clone())
            {
                v.held_rotation = Some(h);
            }
        }
    }

    /// The refresh engine over this store, talking to the issuer the environment names (the
    /// CLI's one-shot commands; a long-running face passes its `Config`: `token_manager_with`).
    pub fn token_manager(&self) -> crate::refresh::TokenManager {
        self.token_manager_with(
            crate::oauth::client::Issuer::from_env(),
            crate::refresh::RefreshConfig::from_env(&crate::refresh::upstream_base()),
        )
    }

    /// The refresh engine over this store, talking to `issuer`.
    pub fn token_manager_with(
        &self,
        issuer: crate::oauth::client::Issuer,
        config: crate::refresh::RefreshConfig,
    ) -> crate::refresh::TokenManager {
        use crate::oauth::client::TokenClient;
        let tm = crate::refresh::TokenManager::new(
            self.store.clone(),
            self.vault.clone(),
            TokenClient::new(issuer),
            config,
        );
        // Every rotation is followed into the brokered holders' own auth.json (docs/broker.md).
        tm.set_rotation_observer(Arc::new(crate::codex_writeback::CodexWriteback::new(
            self.store.clone(),
            self.vault.clone(),
        )));
        tm
    }

    pub fn view(&self, reference: &str) -> Result<AccountView, AppError> {
        Ok(self.store.find_account(reference)?.view(now_ms()))
    }

    /// The endpoint's local API key: generated on first use, kept sealed in the store.
    pub fn local_api_key(&self) -> Result<crate::secret::Secret, AppError> {
        if let Some(blob) = self.store.meta_get(LOCAL_KEY_META)? {
            return Ok(self.vault.open("", Field::LocalApiKey, &blob)?);
        }
        self.store.with_meta_lock(|meta| {
            if let Some(blob) = meta.get(LOCAL_KEY_META)? {
                return Ok(self.vault.open("", Field::LocalApiKey, &blob)?);
            }
            let key = new_local_key();
            let blob = self.vault.seal("", Field::LocalApiKey, &key);
            meta.set(LOCAL_KEY_META, &blob)?;
            Ok(key)
        })
    }

    /// Replaces the local API key; clients configured with the old one get 401 from now on.
    pub fn rotate_local_api_key(&self) -> Result<crate::secret::Secret, AppError> {
        let key = new_local_key();
        self.store.meta_set(
            LOCAL_KEY_META,
            &self.vault.seal("", Field::LocalApiKey, &key),
        )?;
        Ok(key)
    }

    pub fn remove(&self, reference: &str) -> Result<AccountView, AppError> {
        let account = self.store.find_account(reference)?;
        self.store.remove_account(&account.id)?;
        Ok(account.view(now_ms()))
    }
}

fn new_local_key() -> crate::secret::Secret {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    crate::secret::Secret::new(format!(
        "cvk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}
