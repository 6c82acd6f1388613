"""How a run looks: the course's Tester lines, tables and charts."""
