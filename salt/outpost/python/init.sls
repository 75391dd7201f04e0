{#- The official embeddable Python, one folder per pinned version (Windows only: elsewhere apps
    name an interpreter the OS provides). -#}
{%- from "outpost/map.jinja" import outpost, is_windows with context %}
{%- if is_windows %}
{%-   for version, python in outpost.pythons | dictsort %}
{%-     set folder = outpost.root ~ "\\python\\" ~ version %}

{{ ("outpost-python-" ~ version ~ "-extracted") | json }}:
  archive.extracted:
    - name: {{ folder | json }}
    - source: {{ python.source | json }}
    - source_hash: {{ python.source_hash | json }}
    - enforce_toplevel: false
    - if_missing: {{ (folder ~ "\\python.exe") | json }}
{%-   endfor %}
{%- endif %}
