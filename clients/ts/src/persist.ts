// Optional persistence of a session, so that a page reload does not force a
// new login. Off by default (see README, "Security notes").
//
// What is kept: the server's identity key, key id, public key and epoch; the
// token; the client key pair as WebCrypto CryptoKeys (non-extractable keys
// stay non-extractable: IndexedDB stores them by structured clone, and script
// can use them but never read them). What is not: the time base (a reload
// restarts the monotonic clock, so the client refetches the signed directory
// for a fresh s_time) and a key whose rotation is still pending.

/** A stored session. Opaque to callers; the client validates it on load. */
export interface PersistedSession {
  v: 1;
  baseURL: string;
  username: string;
  suite: string;
  identity: Uint8Array;
  epoch: string;
  serverPublic: Uint8Array;
  token: Uint8Array;
  keyPair: CryptoKeyPair;
  keyPub: Uint8Array;
  installedAt: number;
}

/** Where a session is kept between page loads. */
export interface SessionStore {
  load(): Promise<PersistedSession | undefined>;
  save(s: PersistedSession): Promise<void>;
  clear(): Promise<void>;
}

function req<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

/**
 * A SessionStore in IndexedDB (browsers and Web Workers): one record under
 * `key` in the database `dbName`. Use one key per user and server.
 */
export function indexedDBSessionStore(key = "session", dbName = "dynkey"): SessionStore {
  const STORE = "sessions";
  let dbp: Promise<IDBDatabase> | undefined;
  const db = () => {
    if (!dbp) {
      if (typeof indexedDB === "undefined") return Promise.reject(new Error("dynkey: no IndexedDB here"));
      const open = indexedDB.open(dbName, 1);
      open.onupgradeneeded = () => open.result.createObjectStore(STORE);
      dbp = req(open);
    }
    return dbp;
  };
  const tx = async (mode: IDBTransactionMode) => (await db()).transaction(STORE, mode).objectStore(STORE);
  return {
    async load() {
      return (await req((await tx("readonly")).get(key))) as PersistedSession | undefined;
    },
    async save(s) {
      await req((await tx("readwrite")).put(s, key));
    },
    async clear() {
      await req((await tx("readwrite")).delete(key));
    },
  };
}
