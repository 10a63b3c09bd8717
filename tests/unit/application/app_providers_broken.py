"""A provider module whose import fails, like one needing a native library the image lacks."""

raise ImportError("libmemcached.so.11: cannot open shared object file: No such file or directory")
