"""Sharing a user's daily plan limit among its mailboxes: max-min fairness (water-filling).

Each mailbox gets its ramp quota if the plan allows; otherwise every mailbox gets the same level,
except those that want less, which get what they want. Integer shares; the leftover units go to
the mailboxes with the lowest ids, so the result is deterministic.
"""

from __future__ import annotations


def fair_shares(limit: int, wanted: dict[int, int]) -> dict[int, int]:
    if limit < 0:
        raise ValueError("limit must be 0 or more")
    if sum(wanted.values()) <= limit:
        return dict(wanted)
    shares = dict.fromkeys(wanted, 0)
    open_ids = sorted(m for m, w in wanted.items() if w > 0)
    left = limit
    while open_ids and left > 0:
        level = left // len(open_ids)
        if level == 0:
            for m in open_ids[:left]:  # fewer units than mailboxes: lowest ids first
                shares[m] += 1
            break
        satisfied = [m for m in open_ids if wanted[m] - shares[m] <= level]
        if satisfied:
            for m in satisfied:
                left -= wanted[m] - shares[m]
                shares[m] = wanted[m]
            open_ids = [m for m in open_ids if m not in satisfied]
        else:
            for m in open_ids:
                shares[m] += level
            left -= level * len(open_ids)
    return shares


def allowance(limit: int, wanted: dict[int, int], granted_today: dict[int, int], mailbox_id: int) -> int:
    """What `mailbox_id` may send today: its fair share, never more than the plan has left."""
    share = fair_shares(limit, wanted).get(mailbox_id, 0)
    others = sum(n for m, n in granted_today.items() if m != mailbox_id)
    return max(0, min(share, limit - others))
