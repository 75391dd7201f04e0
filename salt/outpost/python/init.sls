{#- The official embeddable Python, one folder per pinned version (Windows only: elsewhere apps
    name an interpreter the OS provides). -#}
{%- from "outpost/map.jinja" import outpost, is_windows with context %}
{%- if is_windows %}
{%-   for version, python in outpost.pythons | dictsort %}

outpost-python-{{ version }}-extracted:
  archive.extracted:
    - name: '{{ outpost.root }}\python\{{ version }}'
    - source: {{ python.source }}
    - source_hash: {{ python.source_hash }}
    - enforce_toplevel: false
    - if_missing: '{{ outpost.root }}\python\{{ version }}\python.exe'
{%-   endfor %}
{%- endif %}
