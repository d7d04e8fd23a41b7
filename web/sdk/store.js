// A minimal promise wrapper over IndexedDB for the SDK's two stores: the
// identity ({mnemonic, aliasId}) and the pinned peer keys.

import { DuetError } from './util.js';

/** The default IndexedDB database name. */
export const DEFAULT_DB = 'duet';
const DB_VERSION = 1;

/** Object store of the identity record (key "self"). */
export const STORE_IDENTITY = 'identity';
/** Object store of pinned peer keys (key = peer alias). */
export const STORE_PINS = 'pins';

const dbs = new Map();

function req(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

/**
 * Opens (and creates or upgrades) the SDK database.
 * @param {string} [name]
 * @returns {Promise<IDBDatabase>}
 */
export function openDB(name = DEFAULT_DB) {
  if (dbs.has(name)) return dbs.get(name);
  if (!globalThis.indexedDB) {
    return Promise.reject(new DuetError('ErrUnsupported', 'IndexedDB is not available here (a private window or a worker without it?); keep the mnemonic yourself'));
  }
  const p = new Promise((resolve, reject) => {
    const r = indexedDB.open(name, DB_VERSION);
    r.onupgradeneeded = () => {
      const db = r.result;
      if (!db.objectStoreNames.contains(STORE_IDENTITY)) db.createObjectStore(STORE_IDENTITY);
      if (!db.objectStoreNames.contains(STORE_PINS)) db.createObjectStore(STORE_PINS);
    };
    r.onsuccess = () => {
      const db = r.result;
      db.onversionchange = () => {
        db.close();
        dbs.delete(name);
      };
      resolve(db);
    };
    r.onerror = () => reject(new DuetError('ErrStorage', `opening IndexedDB "${name}": ${r.error?.message}`));
    r.onblocked = () => reject(new DuetError('ErrStorage', `opening IndexedDB "${name}" is blocked by another tab holding an older version; close it and retry`));
  });
  dbs.set(name, p);
  p.catch(() => dbs.delete(name));
  return p;
}

async function run(dbName, store, mode, fn) {
  const db = await openDB(dbName);
  const tx = db.transaction(store, mode);
  const done = new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(new DuetError('ErrStorage', `IndexedDB ${store}: ${tx.error?.message}`));
    tx.onabort = () => reject(new DuetError('ErrStorage', `IndexedDB ${store}: transaction aborted: ${tx.error?.message}`));
  });
  const [result] = await Promise.all([req(fn(tx.objectStore(store))), done]);
  return result;
}

/** @returns {Promise<any>} the value under key, or undefined */
export function idbGet(dbName, store, key) {
  return run(dbName, store, 'readonly', (s) => s.get(key));
}

/** Stores value under key. @returns {Promise<void>} */
export async function idbPut(dbName, store, key, value) {
  await run(dbName, store, 'readwrite', (s) => s.put(value, key));
}

/** Deletes key. @returns {Promise<void>} */
export async function idbDelete(dbName, store, key) {
  await run(dbName, store, 'readwrite', (s) => s.delete(key));
}
