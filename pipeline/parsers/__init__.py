"""Pure parse functions: decoded JSON in, validated records and rejects (with reasons) out; no I/O."""
