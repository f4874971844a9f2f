"""Visual search ads: campaigns, ads for the products seen in shared photos, attribution."""
