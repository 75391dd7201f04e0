{#- WinSW, the service wrapper outpost runs apps with on Windows: pinned and hash-checked. -#}
{%- from "outpost/map.jinja" import outpost, is_windows with context %}
{%- if is_windows and outpost.winsw %}

outpost-winsw-managed:
  file.managed:
    - name: {{ (outpost.root ~ "\\bin\\winsw.exe") | json }}
    - source: {{ outpost.winsw.source | json }}
    - source_hash: {{ outpost.winsw.source_hash | json }}
    - makedirs: true
{%- endif %}
