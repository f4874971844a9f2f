"""The catalog: products, images, features and labels in SQL, photos in a blob store."""
