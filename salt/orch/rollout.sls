{#- One rollout, started by the outpost_release runner with pillar outpost_rollout:id.
    Batches come from the master's outpost configuration, never from the request:
    promote (the registry names the release in the clients' pillar), apply, health gate.
    Any failure halts the rollout, and the clients it moved go back to their previous release.
    A master that took the rollout over starts at plan.start: the first batch not yet through
    its gate. -#}
{%- set rollout_id = pillar["outpost_rollout"]["id"] | int %}
{%- set plan = salt["saltutil.runner"]("outpost_release.plan_rollout", rollout_id=rollout_id) %}
{%- set steps = [] %}
{%- set start = plan.get("start", 0) | int %}
{%- for batch in plan.batches[start:] %}
{%-   set index = start + loop.index0 %}

outpost-orch-rollout-batch-{{ index }}-promote:
  salt.runner:
    - name: outpost_release.promote
    - rollout_id: {{ rollout_id }}
    - batch: {{ index }}
    - clients: {{ batch | json }}
{%-   if steps %}
    - require:
      - salt: {{ steps | last | json }}
{%-   endif %}

outpost-orch-rollout-batch-{{ index }}-apply:
  salt.state:
    - tgt: {{ batch | json }}
    - tgt_type: list
    - sls: outpost.apps
    - pillar:
        outpost_rollout: {{ {"app": plan.app, "version": plan.version} | json }}
    - queue: true
    - expect_minions: true
    - allow_fail: {{ plan.max_failures | json }}
    - timeout: {{ plan.state_timeout | json }}
    - require:
      - salt: outpost-orch-rollout-batch-{{ index }}-promote

outpost-orch-rollout-batch-{{ index }}-gate:
  salt.runner:
    - name: outpost_release.gate
    - rollout_id: {{ rollout_id }}
    - batch: {{ index }}
    - clients: {{ batch | json }}
    - soak: {{ plan.soak | json }}
    - max_failures: {{ plan.max_failures | json }}
    {#- The gate follows the batch's state run, which fails unless the release answers healthy;
        the runner decides whether that is enough (no soak, no failure allowed). #}
    - state_gated: true
    - require:
      - salt: outpost-orch-rollout-batch-{{ index }}-apply
{%-   do steps.extend(["outpost-orch-rollout-batch-" ~ index ~ "-promote",
                       "outpost-orch-rollout-batch-" ~ index ~ "-apply",
                       "outpost-orch-rollout-batch-" ~ index ~ "-gate"]) %}
{%- endfor %}

outpost-orch-rollout-finish:
  salt.runner:
    - name: outpost_release.finish
    - rollout_id: {{ rollout_id }}
    - offline: {{ plan.offline | json }}
{%- if steps %}
    - require:
      - salt: {{ steps | last | json }}
{%- endif %}
{%- if steps %}

outpost-orch-rollout-halt:
  salt.runner:
    - name: outpost_release.halt
    - rollout_id: {{ rollout_id }}
    - onfail_any:
{%-   for step in steps %}
      - salt: {{ step | json }}
{%-   endfor %}
{%- endif %}
