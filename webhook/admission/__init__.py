"""The one seam between transport and logic: ``seam.admit`` turns a policy verdict into an
AdmissionResponse; ``engine`` holds the current policy and registry as decision contexts.
"""
