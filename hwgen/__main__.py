# SPDX-License-Identifier: Apache-2.0
from hwgen.cli import main

raise SystemExit(main())
