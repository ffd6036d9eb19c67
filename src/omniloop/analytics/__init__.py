"""Analytics: RFM segments, CLV (BG/NBD + Gamma-Gamma), store dashboards, campaign lift."""
