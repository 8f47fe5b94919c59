"""Outbound network access: the one guard every URL a team can set goes through."""

from creditbook.adapters.net.guard import OutboundGuard, Resolver, system_resolve, unsafe_reason

__all__ = ["OutboundGuard", "Resolver", "system_resolve", "unsafe_reason"]
