{#- This master's outpost_release.resume took a rollout over from a master that is gone: run it
    here, in this master's own process tree. The runner checks the claim the event names. -#}
outpost-reactor-rollout-resume:
  runner.outpost_release.rollout:
    - rollout_id: {{ data.get("rollout") | json }}
    - resume_claim: {{ data.get("claim", "") | json }}
