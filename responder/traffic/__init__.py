"""Traffic switches: one module per kind of object that routes traffic to a canary, behind one protocol
(:mod:`responder.traffic.base`). Importing this package registers every shipped switch."""

from responder.traffic import httproute, istio, nginx
from responder.traffic.base import Api, SwitchProblem, TrafficSwitch, kinds, merged, register, switch_for

__all__ = [
    "Api",
    "SwitchProblem",
    "TrafficSwitch",
    "httproute",
    "istio",
    "kinds",
    "merged",
    "nginx",
    "register",
    "switch_for",
]
