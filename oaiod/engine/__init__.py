"""The sync engine (design §3–§5): ``plan`` (pure merge), ``localfs`` (safe local writes), ``pull``, ``push``
(version commit), ``cycle`` (``SyncEngine``, all the daemon talks to). It sees only ``oaiod.state``, the server
API and ``oaiod.storage.Backend`` — never a provider."""
