"""The schemas that earlier versions of main left, built with today's migrations and old DDL.

Two edits made in place left databases that today's migrations alone cannot
describe (``git log -p -- src/creditbook/adapters/db/migrations/versions/``):

* 0002 to 0006 were committed as empty stubs (ff2b5d0) and filled in later:
  0002 and 0003 in b2130e0, 0004 in 13c934d, 0006 in 3907b15, 0005 in
  e265cbf. A database migrated in between is stamped 0006 and lacks the tables
  of the stubs it ran. Later versions upgraded some of them further: from 0006
  on to 0009 (0010 needs ``api_keys``), to 0010 (0011 needs ``purchases``), or
  to 0013 when only 0005 was missing (no later migration touches its tables).
* the first 0008 (ee2cab5) also set ``fillfactor = 80`` on PostgreSQL's
  ``grants``; the revised 0008 (8384c69) did not.

Each history below is a sequence of steps: today's migrations up to a
revision (identical, for those revisions, to what ran then), a stamp where an
empty migration ran, and the statements of a first version written out here.
"""

from __future__ import annotations

from upgrade_data import Ddl, Stamp, Step, Upgrade

# The first version of 0008 ran this after dropping the two indexes (PostgreSQL only).
FIRST_0008_FILLFACTOR = Ddl({"postgresql": ("ALTER TABLE grants SET (fillfactor = 80)",)})

# 0006 as filled in by 3907b15, before 0005 was: the sign-in links table.
DASHBOARD_0006 = Ddl(
    {
        dialect: (
            f"""
            CREATE TABLE dashboard_signin_links (
                team_id VARCHAR(40) NOT NULL,
                id VARCHAR(40) NOT NULL,
                member_id VARCHAR(40) NOT NULL,
                token_hash VARCHAR(64) NOT NULL,
                created_at {timestamp} NOT NULL,
                expires_at {timestamp} NOT NULL,
                used_at {timestamp},
                CONSTRAINT pk_dashboard_signin_links PRIMARY KEY (team_id, id)
            )
            """,
        )
        for dialect, timestamp in (
            ("sqlite", "DATETIME"),
            ("postgresql", "TIMESTAMP WITH TIME ZONE"),
        )
    }
)

HISTORIES: dict[str, list[Step]] = {
    # ff2b5d0: 0002-0006 empty.
    "stamped 0006 with 0002-0006 empty": [Upgrade("0001_ledger_core"), Stamp("0006_dashboard")],
    # b2130e0: 0004-0006 empty.
    "stamped 0006 with 0004-0006 empty": [Upgrade("0003_access"), Stamp("0006_dashboard")],
    # 13c934d: 0005 and 0006 empty.
    "stamped 0006 with 0005-0006 empty": [Upgrade("0004_purchases"), Stamp("0006_dashboard")],
    # 3907b15: 0005 empty, 0006 filled.
    "stamped 0006 with 0005 empty": [
        Upgrade("0004_purchases"),
        DASHBOARD_0006,
        Stamp("0006_dashboard"),
    ],
    # ee2cab5, then today's migrations up to 0013.
    "upgraded through the first 0008 to 0013": [
        Upgrade("0008_lean_indexes"),
        FIRST_0008_FILLFACTOR,
        Upgrade("0013_dashboard_sessions"),
    ],
    # ff2b5d0, then 581d116 (0007), ee2cab5 (the first 0008), 222b8de (0009).
    "stamped 0006 with 0002-0006 empty, then through the first 0008 to 0009": [
        Upgrade("0001_ledger_core"),
        Stamp("0006_dashboard"),
        Upgrade("0008_lean_indexes"),
        FIRST_0008_FILLFACTOR,
        Upgrade("0009_check_equalities"),
    ],
    # b2130e0, then 6e919c2 (0010; 0011 refused it: no purchases).
    "stamped 0006 with 0004-0006 empty, then to 0010": [
        Upgrade("0003_access"),
        Stamp("0006_dashboard"),
        Upgrade("0010_key_caps"),
    ],
    # 3907b15, then f8efad9 (0013).
    "stamped 0006 with 0005 empty, then to 0013": [
        Upgrade("0004_purchases"),
        DASHBOARD_0006,
        Stamp("0006_dashboard"),
        Upgrade("0013_dashboard_sessions"),
    ],
}
