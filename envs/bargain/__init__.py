"""EarlyExp/Bargain-v0 and the PettingZoo ``bargain_v0``: a two-party price negotiation.

``BargainEnv`` is the Gymnasium view (one side against the scripted negotiator);
:mod:`earlyexp.envs.bargain_v0` is the two-agent PettingZoo env (needs the ``multiagent``
extra); both play the game of :mod:`earlyexp.envs.bargain.game`.
"""
