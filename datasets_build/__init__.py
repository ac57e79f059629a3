"""Dataset builders for MUCaps, MUEdit, MUImage and MUVideo (CLI: ``m2ugen-data``; guide: ``docs/data.md``).

Modules: ``sources`` (folders, segment CSVs, shards), ``download`` (optional yt-dlp), ``manifest``
(the JSONL schema shared with ``training``), ``engine`` (resumable batch loop), ``musicfilter``,
``captioners``, ``writers``, ``features`` and ``pairing`` (MUEdit matching), one module per builder
(``mucaps``, ``muedit``, ``muvisual``), ``summary`` and ``cli``.
"""
