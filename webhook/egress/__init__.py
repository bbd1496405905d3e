"""The egress registry: host normalisation (``hosts``), the file format (``schema``), the index
built once per load (``index``) and the loaded registry (``registry``). Pure; no I/O beyond
reading the registry file it is asked to load.
"""
